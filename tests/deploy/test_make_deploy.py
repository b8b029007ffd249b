"""`make deploy_base DRY_RUN=1` and `make deploy_job DRY_RUN=1` print the whole plan and
need no cluster; nothing is applied and no secret is printed or written."""

import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.helpers.paths import ROOT

ARGO_RELEASE = ROOT / "infrastructure/manifests/argo/release.env"

# What `make build_all` would have recorded (the tests never read or write the real record).
BUILT = {"REGISTRY": "localhost:5000", "TAG": "0123abcd0123"}


def make(*args: str, built: dict | None = BUILT, check: bool = True):
    """`make ARGS DRY_RUN=1` with a record of what was built (None: no record)."""
    with tempfile.TemporaryDirectory() as folder:
        record = Path(folder) / "images.built.env"
        if built is not None:
            record.write_text("".join(f"{key}={value}\n" for key, value in built.items()))
        result = subprocess.run(
            ["make", *args, "DRY_RUN=1", f"BUILT_RECORD={record}"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    if not check:
        return result
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@functools.cache
def deploy_base() -> str:
    """`make deploy_base DRY_RUN=1` with the default record: one run, read by several tests."""
    return make("deploy_base")


@pytest.mark.slow  # a whole dry run: 5 s
def test_deploy_base_dry_run_prints_commands_and_manifests():
    before = sorted(ROOT.glob("infrastructure/manifests/*/secrets/*"))
    output = make("deploy_base")  # not the shared run: this one is watched for what it writes
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
    # Argo from the repository (vendored), nothing downloaded; its CRDs' schemas elided.
    release = dict(re.findall(r"^(ARGO_\w+)=(\S+)$", ARGO_RELEASE.read_text(), flags=re.M))
    assert f"image: quay.io/argoproj/workflow-controller:{release['ARGO_VERSION']}" in output
    assert "name: cronworkflows.argoproj.io" in output and len(output) < 500_000
    assert not re.search(r"https://(?!.*localhost)|curl -[a-zA-Z]*o|wget", output)
    assert sorted(ROOT.glob("infrastructure/manifests/*/secrets/*")) == before  # nothing written


def test_deploy_job_dry_run_prints_every_cron_workflow():
    output = make("deploy_job")
    names = ("forecasting", "forecast-drift", "register-next-week", "search-ranker",
             "ranker-drift", "similar-words", "image-index", "violation-retrain",
             "moderation-drift")  # fmt: skip
    for name in names:
        assert f"+ kubectl apply -f infrastructure/argo/{name}.yaml" in output
    assert output.count("kind: CronWorkflow") == len(names)


@pytest.mark.slow  # a whole dry run: 5 s
def test_deploy_replaces_the_initial_jobs_and_waits_for_what_it_starts():
    """Issue 11, items 3 and 10: a changed config made `apply -k` fail on the immutable
    initial-load Job, and deploy.sh went on without waiting for RabbitMQ, Elasticsearch,
    the Jobs or the Argo controller."""
    commands = [line for line in deploy_base().splitlines() if line.startswith("+ ")]
    for namespace in ("beverage-sales-forecasting", "aianimals"):
        delete = (f"+ kubectl -n {namespace} delete job -l mlsys.io/replaced-on-deploy=true "
                  "--ignore-not-found --wait")  # fmt: skip
        apply = f"+ kubectl apply --server-side -k infrastructure/manifests/{namespace}"
        assert commands.index(delete) < commands.index(apply)
    waits = [c for c in commands if " rollout status " in c or " wait " in c]
    for waited in (
        "statefulset/postgres", "deployment/mlflow", "deployment/workflow-controller",
        "job/initial-registration", "statefulset/elasticsearch", "statefulset/rabbitmq",
        "job/aianimals-initial-load", "deployment/api", "deployment/bi",
    ):  # fmt: skip
        assert any(waited in c for c in waits), waited
    # Each wait comes after the apply of its namespace.
    applied = [c for c in commands if "apply --server-side -k" in c]
    for wait in waits:
        namespace = wait.split(" -n ")[1].split()[0]
        apply = f"+ kubectl apply --server-side -k infrastructure/manifests/{namespace}"
        assert apply in applied and commands.index(apply) < commands.index(wait), wait


@pytest.mark.slow  # two whole dry runs: 6 s
def test_what_is_deployed_names_the_registry_and_the_commit_never_latest():
    """Issue 11, item 10: REGISTRY and TAG did not reach the kustomizations; `:latest` ran.
    The tag is all digits, as the commit 152024868255 was: kustomize refused it unquoted."""
    for target in ("deploy_base", "deploy_job"):
        output = make(target, "REGISTRY=registry.example.com/team", "TAG=012345678901")
        ours = re.findall(r"image: (\S*mlsys-\S+)", output)
        assert ours, target
        for image in ours:
            assert image.startswith("registry.example.com/team/mlsys-"), image
            assert image.endswith(":012345678901"), image
        assert not re.search(r"image: \S+:latest\b", output)
        refused = make(target, "TAG=latest", check=False)
        assert refused.returncode != 0 and "immutable tag" in refused.stderr


@pytest.mark.slow  # two whole dry runs: 6 s
def test_deploy_names_the_tag_build_all_recorded_and_checks_the_registry_first():
    """Issue 30, item 5: following the README, a commit between `make build_all` and
    `make deploy_base` changed the tag (the commit) and the deployment named images that
    were never built. Deploys take the recorded tag; without one (and no TAG=) they stop;
    before anything is applied each image is looked up in REGISTRY."""
    built = {"REGISTRY": "registry.example.com/team", "TAG": "5eed00000001"}
    # deploy_job: data-registration, ml, monitoring, search, violation-detection
    for target, count in (("deploy_base", 10), ("deploy_job", 5)):  # review-portal: its own image
        output = make(target, built=built)
        lines = output.splitlines()
        checks = [line for line in lines if " manifest inspect " in line]
        assert len(checks) == count, checks
        assert all(line.endswith(":5eed00000001") for line in checks), checks
        assert all("registry.example.com/team/mlsys-" in line for line in checks), checks
        first_kubectl = next(i for i, line in enumerate(lines) if line.startswith("+ kubectl"))
        assert lines.index(checks[-1]) < first_kubectl
        assert "image: registry.example.com/team/mlsys-" in output
        missing = make(target, built=None, check=False)
        assert missing.returncode == 2 and "make build_all" in missing.stderr, missing.stderr
    # An explicit TAG (and REGISTRY) wins over the record.
    explicit = make("deploy_job", "TAG=abc123abc123", "REGISTRY=r.example/x", built=built)
    assert "r.example/x/mlsys-search:abc123abc123" in explicit


def test_port_forward_keeps_mlflow_off_a_local_registrys_port():
    """Issue 11, item 10: MLflow's port-forward took :5000, where the registry listens."""
    output = subprocess.run(
        ["bash", "infrastructure/scripts/port_forward.sh"], cwd=ROOT, capture_output=True,
        text=True, env={"DRY_RUN": "1", "PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    local_ports = re.findall(r"port-forward \S+ (\d+):\d+", output)
    assert "5000" not in local_ports and "5001" in local_ports
    assert "localhost:5000" in (ROOT / "Makefile").read_text()  # REGISTRY's default


def argo_checkout(folder: Path, tag: str) -> Path:
    """A git repository laid out as argo-workflows is, with one Deployment and one CRD."""
    repo = folder / "argo-workflows"
    manifests = {
        "manifests/base/kustomization.yaml": "resources: [controller.yaml, crd.yaml]\n",
        "manifests/base/controller.yaml": "apiVersion: apps/v1\nkind: Deployment\n"
        "metadata: {name: workflow-controller}\nspec:\n  template:\n    spec:\n"
        "      containers: [{name: c, image: 'quay.io/argoproj/workflow-controller:latest'}]\n",
        "manifests/base/crd.yaml": "apiVersion: apiextensions.k8s.io/v1\n"
        "kind: CustomResourceDefinition\nmetadata: {name: workflows.argoproj.io}\n",
        "manifests/cluster-install-no-crds/kustomization.yaml": "resources: []\n",
        "manifests/cluster-install/kustomization.yaml": "resources: [../base]\n",
    }
    for name, text in manifests.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "release"], check=True)
    subprocess.run([*git, "tag", tag], check=True)
    return repo


@pytest.mark.skipif(not shutil.which("kubectl"), reason="vendoring renders with kubectl")
def test_make_vendor_argo_renders_the_release_and_records_it(tmp_path):
    """Issue 31: Argo's install is rendered once from the release's own manifests (as its
    Makefile renders the release asset) into the repository, its version and commit
    recorded, instead of downloaded at deploy time."""
    repo = argo_checkout(tmp_path, "v9.9.9")
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()  # fmt: skip
    target = tmp_path / "argo"
    target.mkdir()
    vendored = subprocess.run(
        ["bash", str(ROOT / "infrastructure/scripts/vendor_argo.sh"), str(repo), "v9.9.9"],
        env={**os.environ, "ARGO_FOLDER": str(target)}, capture_output=True, text=True,
    )  # fmt: skip
    assert vendored.returncode == 0, vendored.stderr
    install = (target / "install.yaml").read_text()
    assert install.startswith(f"# Argo Workflows v9.9.9 (commit {commit})")
    assert "image: quay.io/argoproj/workflow-controller:v9.9.9" in install
    assert "kind: CustomResourceDefinition" in install
    assert (
        (target / "release.env")
        .read_text()
        .endswith(f"ARGO_VERSION=v9.9.9\nARGO_COMMIT={commit}\n")
    )
    missing = subprocess.run(
        ["bash", str(ROOT / "infrastructure/scripts/vendor_argo.sh"), str(repo), "v0.0.0"],
        env={**os.environ, "ARGO_FOLDER": str(target)}, capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode != 0  # an unknown tag changes nothing
    assert (target / "install.yaml").read_text() == install


def fake_kubectl(folder: Path, job_state: str) -> dict[str, str]:
    """A kubectl that answers a Job's conditions with `job_state` and logs its calls."""
    script = folder / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {folder}/calls\n'
        'case "$*" in\n'
        f'  *" get job/"*) echo "{job_state}" ;;\n'
        '  *" logs job/"*) echo "Traceback: the load failed" ;;\n'
        "esac\n"
    )
    script.chmod(0o755)
    return {"PATH": f"{folder}:/usr/bin:/bin", "POLL_SECONDS": "0.1"}


def test_a_failed_job_stops_the_deploy_at_once_with_its_log(tmp_path):
    """Issue 31: `kubectl wait --for=condition=complete` waited its whole 1200 s on a Job
    that had already failed."""
    deploy = ["bash", "infrastructure/scripts/deploy.sh", "wait", "aianimals",
              "job/aianimals-initial-load"]  # fmt: skip
    failed = subprocess.run(deploy, cwd=ROOT, capture_output=True, text=True, timeout=30,
                            env=fake_kubectl(tmp_path, "Failed"))  # fmt: skip
    assert failed.returncode == 1
    assert "job/aianimals-initial-load: failed" in failed.stderr
    assert "Traceback: the load failed" in failed.stderr

    done = subprocess.run(deploy, cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env=fake_kubectl(tmp_path, "Complete"))  # fmt: skip
    assert done.returncode == 0 and "job/aianimals-initial-load: complete" in done.stdout


def test_the_moderators_portal_is_reachable_and_a_first_moderator_can_be_made():
    """Issue 31: port_forward lacked the portal, and nothing said how to make the first
    moderator where seeded passwords are random."""
    output = subprocess.run(
        ["bash", "infrastructure/scripts/port_forward.sh"], cwd=ROOT, capture_output=True,
        text=True, env={"DRY_RUN": "1", "PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    assert "port-forward service/review-portal 8502:8502" in output
    made = make("moderator", "HANDLE=kuro")
    assert ("+ kubectl -n aianimals exec deployment/outbox-relay -- python -m mlsys.batch "
            "grant-role kuro moderator") in made  # fmt: skip
    assert make("moderator", check=False).returncode == 2


@pytest.mark.slow  # a whole dry run when it runs first: 6 s
def test_every_deploy_brings_the_databases_and_roles_up_to_date():
    """Issue 31: create-roles.sh ran only on an empty volume, so an existing cluster never
    got the roles a newer version added."""
    commands = [line for line in deploy_base().splitlines() if line.startswith("+ ")]
    roles = ("+ kubectl -n data exec statefulset/postgres -c postgres -- "
             "bash /docker-entrypoint-initdb.d/create-roles.sh")  # fmt: skip
    assert roles in commands
    ready = commands.index("+ kubectl -n data rollout status statefulset/postgres --timeout=600s")
    mlflow = commands.index("+ kubectl apply --server-side -k infrastructure/manifests/mlflow")
    assert ready < commands.index(roles) < mlflow


def test_workflow_steps_reach_only_this_clusters_api_server(tmp_path):
    """Issue 31: the steps could reach any address on 443 and 6443. The committed policy
    holds a placeholder that matches nothing (closed); deploy.sh writes the addresses of
    the cluster's API server (its Service and endpoints) in the copy it applies."""
    policy = tmp_path / "network-policies.yaml"
    policy.write_text(
        (ROOT / "infrastructure/manifests/aianimals/network-policies.yaml").read_text()
    )
    kubectl = tmp_path / "kubectl"
    kubectl.write_text('#!/bin/sh\ncase "$*" in\n  *service*) echo 10.96.0.1 ;;\n'
                       '  *endpoints*) echo "172.18.0.2 172.18.0.3" ;;\nesac\n')  # fmt: skip
    kubectl.chmod(0o755)
    subprocess.run(
        ["bash", "-c", f"source infrastructure/scripts/deploy.sh && with_api_server {policy}"],
        cwd=ROOT, check=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
    )  # fmt: skip
    documents = {d["metadata"]["name"]: d for d in yaml.safe_load_all(policy.read_text()) if d}
    egress = documents["workflow-steps"]["spec"]["egress"]
    api_server = [rule for rule in egress if {p["port"] for p in rule["ports"]} == {443, 6443}]
    assert [[peer["ipBlock"]["cidr"] for peer in rule["to"]] for rule in api_server] == [
        ["10.96.0.1/32", "172.18.0.2/32", "172.18.0.3/32"]
    ]
    assert all("to" in rule for rule in egress)  # no rule lets a step reach anything
