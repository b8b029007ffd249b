"""The local workflow runner's docker runner: each step a container started as the
kubelet starts a pod (user, read-only root, emptyDirs, the memory limit, the environment
from the namespace's objects), output parameters read from its volumes, an out-of-memory
kill reported as OOMKilled and retried as the YAML says, an unrendered ConfigMap name
failing the step as CreateContainerConfigError."""

import base64
from pathlib import Path

import pytest
import yaml

from infrastructure.images import DEBIAN_BASES
from mlsys.pipelines.execute import Execution
from mlsys.pipelines.run import _network
from mlsys.pipelines.runners import DockerRunner, memory_limit
from mlsys.pipelines.workflow import load
from tests.containers.conftest import image_exists

pytestmark = pytest.mark.container

IMAGE = DEBIAN_BASES["PYTHON_IMAGE"]  # Python, nothing of ours: the runner is what is tested
OBJECTS = [
    {"kind": "ConfigMap", "metadata": {"name": "platform-config-5bc7f6t2m4", "namespace": "n"},
     "data": {"GREETING": "hello"}},
    {"kind": "Secret", "metadata": {"name": "token", "namespace": "n"},
     "data": {"TOKEN": base64.b64encode(b"s3cret").decode()}},
]  # fmt: skip
POD = {"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True}
SECURITY = {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]}}  # fmt: skip


def template(name: str, code: str, *, env_from: str = "platform-config-5bc7f6t2m4",
             memory: str = "256Mi", **extra) -> dict:  # fmt: skip
    return {
        "name": name,
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
        "container": {
            "image": IMAGE, "command": ["python", "-c", code], "args": extra.pop("args", []),
            "envFrom": [{"configMapRef": {"name": env_from}}, {"secretRef": {"name": "token"}}],
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            "resources": {"limits": {"memory": memory}}, "securityContext": SECURITY,
        },
        **extra,
    }  # fmt: skip


def execute(tmp_path: Path, templates: list[dict], tasks: list[dict]):
    spec = {"entrypoint": "main", "securityContext": POD,
            "templates": [*templates, {"name": "main", "dag": {"tasks": tasks}}]}  # fmt: skip
    path = tmp_path / "workflow.yaml"
    path.write_text(yaml.safe_dump({"kind": "Workflow", "metadata": {"name": "w", "namespace": "n"},
                                    "spec": spec}))  # fmt: skip
    (tmp_path / "logs").mkdir(exist_ok=True)
    with _network(None) as network:
        runner = DockerRunner("n", OBJECTS, network)
        execution = Execution(load(path), runner, {}, tmp_path / "logs", echo=lambda _: None,
                              limit_of=memory_limit)  # fmt: skip
        return execution.run(), execution.rows


@pytest.fixture(scope="module", autouse=True)
def base_image():
    if not image_exists(IMAGE):
        pytest.fail(f"{IMAGE} is not built: `make base_images`")


def test_steps_run_as_pods_and_pass_what_they_write(tmp_path):
    write = (
        "import os, pathlib; pathlib.Path('/tmp/out').write_text("
        "f\"{os.environ['GREETING']}-{os.environ['TOKEN']}-{os.getuid()}\")"
    )
    check = (
        "import sys, pathlib; assert sys.argv[1] == 'hello-s3cret-10001', sys.argv; "
        "pathlib.Path('/app-not-writable').write_text('x')"
    )  # the root is read-only
    _, rows = execute(
        tmp_path,
        [template("write", write, outputs={"parameters": [
            {"name": "out", "valueFrom": {"path": "/tmp/out"}}]}),
         template("check", check, args=["{{inputs.parameters.out}}"],
                  inputs={"parameters": [{"name": "out"}]})],
        [{"name": "write", "template": "write"},
         {"name": "check", "template": "check", "depends": "write", "arguments": {
             "parameters": [{"name": "out", "value": "{{tasks.write.outputs.parameters.out}}"}]}}],
    )  # fmt: skip
    assert [(r.step, r.phase) for r in rows] == [("w.write", "Succeeded"), ("w.check", "Failed")]
    log = (tmp_path / "logs" / "w.check.1.log").read_text()
    assert "Read-only file system" in log and "AssertionError" not in log


def test_a_step_over_its_memory_limit_is_oom_killed_and_retried(tmp_path):
    hungry = "x = bytearray(400 * 2**20); x[::4096] = b'1' * len(x[::4096])"
    phase, rows = execute(
        tmp_path,
        [template("hungry", hungry, memory="64Mi",
                  retryStrategy={"limit": 1, "retryPolicy": "OnFailure"})],
        [{"name": "hungry", "template": "hungry"}],
    )  # fmt: skip
    assert phase == "Failed"
    assert [(r.attempt, r.phase, r.reason) for r in rows] == [
        (1, "Failed", "OOMKilled"),
        (2, "Failed", "OOMKilled"),
    ]
    assert rows[0].limit_bytes == 64 * 2**20


def test_an_unrendered_config_map_name_fails_the_step_as_the_kubelet_does(tmp_path):
    phase, rows = execute(
        tmp_path,
        [template("hashed", "pass", env_from="platform-config",
                  retryStrategy={"limit": 2, "retryPolicy": "OnFailure"})],
        [{"name": "hashed", "template": "hashed"}],
    )  # fmt: skip
    assert phase == "Failed"
    assert [(r.phase, r.reason) for r in rows] == [
        ("Error", 'CreateContainerConfigError: configmap "platform-config" not found')
    ]
