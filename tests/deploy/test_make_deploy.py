"""`make deploy_base DRY_RUN=1` and `make deploy_job DRY_RUN=1` print the whole plan and
need no cluster; nothing is applied and no secret is printed or written."""

import re
import subprocess

from tests.helpers.paths import ROOT


def make(*args: str) -> str:
    result = subprocess.run(
        ["make", *args, "DRY_RUN=1"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_deploy_base_dry_run_prints_commands_and_manifests():
    before = sorted(ROOT.glob("infrastructure/manifests/*/secrets/*"))
    output = make("deploy_base")
    commands = [line for line in output.splitlines() if line.startswith("+ kubectl")]
    for namespace in (
        "data",
        "mlflow",
        "argo",
        "beverage-sales-forecasting",
        "search-engine",
        "aianimals",
    ):
        assert f"+ kubectl apply -f infrastructure/manifests/{namespace}/namespace.yaml" in commands
        assert f"+ kubectl apply --server-side -k infrastructure/manifests/{namespace}" in commands
    kinds = set(re.findall(r"^kind: (\w+)$", output, flags=re.MULTILINE))
    assert {"StatefulSet", "Deployment", "Job", "Role", "Secret"} <= kinds
    assert "argo-workflows/releases/download/v3.6.4/install.yaml" in output
    assert sorted(ROOT.glob("infrastructure/manifests/*/secrets/*")) == before  # nothing written


def test_deploy_job_dry_run_prints_both_cron_workflows():
    output = make("deploy_job")
    assert "+ kubectl apply -f infrastructure/argo/forecasting.yaml" in output
    assert "+ kubectl apply -f infrastructure/argo/register-next-week.yaml" in output
    assert output.count("kind: CronWorkflow") == 2
