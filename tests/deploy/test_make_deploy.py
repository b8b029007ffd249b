"""`make deploy_base DRY_RUN=1` and `make deploy_job DRY_RUN=1` print the whole plan and
need no cluster; nothing is applied and no secret is printed or written."""

import os
import re
import subprocess
import tempfile
from pathlib import Path

import yaml

from tests.helpers.paths import ROOT

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
    assert (
        "fetch_pinned.sh https://github.com/argoproj/argo-workflows/releases/download/v3.6.4/install.yaml"
        in output
    )
    assert sorted(ROOT.glob("infrastructure/manifests/*/secrets/*")) == before  # nothing written


def test_deploy_job_dry_run_prints_every_cron_workflow():
    output = make("deploy_job")
    names = ("forecasting", "register-next-week", "search-ranker", "similar-words",
             "image-index", "violation-retrain")  # fmt: skip
    for name in names:
        assert f"+ kubectl apply -f infrastructure/argo/{name}.yaml" in output
    assert output.count("kind: CronWorkflow") == len(names)


def test_deploy_replaces_the_initial_jobs_and_waits_for_what_it_starts():
    """Issue 11, items 3 and 10: a changed config made `apply -k` fail on the immutable
    initial-load Job, and deploy.sh went on without waiting for RabbitMQ, Elasticsearch,
    the Jobs or the Argo controller."""
    commands = [line for line in make("deploy_base").splitlines() if line.startswith("+ ")]
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


def test_deploy_names_the_tag_build_all_recorded_and_checks_the_registry_first():
    """Issue 30, item 5: following the README, a commit between `make build_all` and
    `make deploy_base` changed the tag (the commit) and the deployment named images that
    were never built. Deploys take the recorded tag; without one (and no TAG=) they stop;
    before anything is applied each image is looked up in REGISTRY."""
    built = {"REGISTRY": "registry.example.com/team", "TAG": "5eed00000001"}
    for target, count in (("deploy_base", 9), ("deploy_job", 4)):
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


def fetch(tmp_path, content: bytes, digest: str) -> subprocess.CompletedProcess:
    source = tmp_path / "release-install.yaml"
    source.write_bytes(content)
    return subprocess.run(
        ["bash", str(ROOT / "infrastructure/scripts/fetch_pinned.sh"), f"file://{source}",
         digest, str(tmp_path / "install.yaml")],
        capture_output=True, text=True,
    )  # fmt: skip


def test_argos_install_is_applied_only_with_its_pinned_digest(tmp_path):
    """Issue 11, item 10: the install URL named a release asset, which can be replaced
    upstream; deploy.sh now downloads it and applies it only if its SHA-256 is pinned."""
    import hashlib

    release = b"kind: CustomResourceDefinition\n"
    good = fetch(tmp_path, release, hashlib.sha256(release).hexdigest())
    assert good.returncode == 0, good.stderr
    assert (tmp_path / "install.yaml").read_bytes() == release
    (tmp_path / "install.yaml").unlink()
    replaced = fetch(
        tmp_path, release + b"# replaced upstream\n", hashlib.sha256(release).hexdigest()
    )
    assert replaced.returncode == 2 and "refusing" in replaced.stderr
    unpinned = fetch(tmp_path, release, "")
    assert unpinned.returncode == 2 and "make pin_argo" in unpinned.stderr
    assert not list(tmp_path.glob("install.yaml")) and not list(tmp_path.glob(".fetch.*"))
    kustomization = (ROOT / "infrastructure/manifests/argo/kustomization.yaml").read_text()
    assert "https://" not in kustomization  # nothing applied unverified
    assert "ARGO_VERSION=v3.6.4" in (ROOT / "infrastructure/manifests/argo/release.env").read_text()


def test_make_pin_argo_records_the_digest_deploy_checks(tmp_path):
    """From a mirror of the release assets (GitHub is not reachable here)."""
    import hashlib

    mirror = tmp_path / "releases" / "v3.6.5"
    mirror.mkdir(parents=True)
    (mirror / "install.yaml").write_bytes(b"kind: Deployment\n")
    release = tmp_path / "release.env"
    release.write_text((ROOT / "infrastructure/manifests/argo/release.env").read_text())
    pinned = subprocess.run(
        ["bash", str(ROOT / "infrastructure/scripts/pin_argo.sh"), "v3.6.5"],
        env={**os.environ, "ARGO_RELEASES": f"file://{tmp_path}/releases",
             "RELEASE_ENV": str(release)},
        capture_output=True, text=True,
    )  # fmt: skip
    assert pinned.returncode == 0, pinned.stderr
    digest = hashlib.sha256(b"kind: Deployment\n").hexdigest()
    assert f"ARGO_VERSION=v3.6.5\nARGO_INSTALL_SHA256={digest}\n" in release.read_text()
    assert fetch(tmp_path, b"kind: Deployment\n", digest).returncode == 0


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


def test_every_deploy_brings_the_databases_and_roles_up_to_date():
    """Issue 31: create-roles.sh ran only on an empty volume, so an existing cluster never
    got the roles a newer version added."""
    commands = [line for line in make("deploy_base").splitlines() if line.startswith("+ ")]
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
