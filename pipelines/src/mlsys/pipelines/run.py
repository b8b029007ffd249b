"""Run one workflow file with a runner, and the summary of its steps."""

import subprocess
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from mlsys.pipelines import kubelet, kustomize
from mlsys.pipelines.execute import SUCCEEDED, Execution, Row, Runner
from mlsys.pipelines.runners import DockerRunner, ProcessRunner, memory_limit
from mlsys.pipelines.workflow import load


def built_images(documents: list[dict], registry: str, tag: str) -> dict[str, str]:
    """Each `REGISTRY/mlsys-*` image a workflow names, mapped to the tag that was built."""
    found: dict[str, str] = {}

    def walk(obj) -> None:
        if isinstance(obj, dict):
            image = obj.get("image")
            if isinstance(image, str) and image.startswith(f"{registry}/mlsys-"):
                found[image] = image.rsplit(":", 1)[0] + f":{tag}"
            for value in obj.values():
                walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)

    walk(documents)
    return found


@contextmanager
def _network(name: str | None):
    """The Docker network the steps join: the given one (where the services they reach
    run), else a fresh one removed afterwards."""
    if name:
        yield name
        return
    name = f"mlsys-pipelines-{uuid.uuid4().hex[:8]}"
    subprocess.run([kubelet.docker(), "network", "create", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run([kubelet.docker(), "network", "rm", name], capture_output=True)


def run_workflow(
    path: Path,
    parameters: dict[str, str],
    *,
    runner: str,
    logs: Path,
    manifests: Path | None = None,
    network: str | None = None,
    images: tuple[str, str] | None = None,
    echo: Callable[[str], None] = print,
    show_logs: bool = False,
) -> tuple[str, list[Row]]:
    """The workflow's phase and one row per attempt of each step.

    docker: each step in its image, with the objects `manifests/<namespace>` renders, on
    `network`, `images` = (registry, tag) naming the built tag of the platform's images.
    process: each step as a local process (runners.ProcessRunner). `show_logs`: each
    attempt's log echoed after it, besides its file."""
    workflow = load(path)
    values = workflow.parameters(parameters)
    logs.mkdir(parents=True, exist_ok=True)
    if runner == "process":
        return _execute(workflow, ProcessRunner(logs), values, logs, echo, show_logs)
    if manifests is None:
        raise ValueError("the docker runner needs the manifests the namespace renders")
    documents = kustomize.rendered(manifests / workflow.namespace)
    mapping = built_images([workflow.spec], *images) if images else {}
    with _network(network) as name:
        docker = DockerRunner(workflow.namespace, documents, name, mapping)
        return _execute(workflow, docker, values, logs, echo, show_logs)


def _execute(
    workflow, runner: Runner, values, logs: Path, echo, show_logs: bool
) -> tuple[str, list[Row]]:
    execution = Execution(workflow, runner, values, logs, echo, memory_limit, show_logs)
    phase = execution.run()
    return phase, execution.rows


def succeeded(phase: str) -> bool:
    return phase == SUCCEEDED
