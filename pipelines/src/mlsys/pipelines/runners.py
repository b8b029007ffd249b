"""What starts a workflow's container steps.

DockerRunner: each step in the image its template names, as the kubelet starts a pod
(kubelet.py): command and args, `env` and `envFrom` resolved from the objects the
namespace's kustomization renders (a missing ConfigMap, Secret or key is the pod's
CreateContainerConfigError), its volumes, its securityContext (user, read-only root), its
memory limit (an out-of-memory kill is OOMKilled, a failure Argo retries on OnFailure).

ProcessRunner: the same command and args as a local process, for a machine without a
container engine: `python` is this environment's interpreter, the environment is this
process's (the local profile's settings stand in for the namespace's objects, whose
`envFrom` it does not read), each volume is a fresh folder that the paths in the
arguments and output parameters are moved into, and /app (where the images carry the
repository's files) is the repository. Memory is measured, not limited.
"""

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from mlsys.pipelines import kubelet
from mlsys.pipelines.execute import ERROR, FAILED, SUCCEEDED, Attempt, ContainerStep


def memory_limit(template: dict) -> int | None:
    limit = template["container"].get("resources", {}).get("limits", {}).get("memory")
    return kubelet.quantity(limit) if limit else None


def _outputs(template: dict, read: Callable[[str], str | None]) -> tuple[dict[str, str], str]:
    """The output parameters (`valueFrom.path`, or its default), or the error Argo reports."""
    values: dict[str, str] = {}
    for parameter in template.get("outputs", {}).get("parameters", []):
        source = parameter.get("valueFrom", {})
        if "path" not in source:
            continue
        text = read(source["path"])
        if text is None:
            if "default" not in source:
                return values, f"output parameter {parameter['name']}: no file {source['path']}"
            text = str(source["default"])
        values[parameter["name"]] = text.strip()
    return values, ""


# Where the images carry the repository's files (infrastructure/images.toml: `files`,
# copied into /app as they lie in the repository): the process runner reads them in place.
IMAGE_APP = "/app"


class ProcessRunner:
    def __init__(self, work: Path, repository: Path | None = None):
        self.work = work
        self.repository = (repository or Path.cwd()).resolve()

    def run(self, step: ContainerStep) -> Attempt:
        container = step.template["container"]
        folder = Path(tempfile.mkdtemp(prefix="step-", dir=self.work))
        mounts = {
            mount["mountPath"]: folder / mount["name"]
            for mount in container.get("volumeMounts", [])
        }
        for path in mounts.values():
            path.mkdir(exist_ok=True)
        mounts.setdefault(IMAGE_APP, self.repository)

        def local(text: str) -> str:
            """A path under a mount moved to its folder (an argument, or after `--x=`)."""
            for mount_path in sorted(mounts, key=len, reverse=True):
                pattern = rf"(^|=){re.escape(mount_path)}(?=/|$)"
                text = re.sub(pattern, rf"\g<1>{mounts[mount_path]}", text)
            return text

        env = dict(os.environ)
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = kubelet.expand(str(variable["value"]), env)
        entrypoint, arguments = kubelet.argv(container, env)
        if entrypoint is None:
            return Attempt(ERROR, reason="the process runner needs the template's command")
        command = [sys.executable if entrypoint in ("python", "python3") else entrypoint]
        command += [local(argument) for argument in arguments]
        start = time.monotonic()
        end = start + step.deadline if step.deadline is not None else None
        reason = ""
        with step.log.open("w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)  # fmt: skip
            while True:  # wait4, not wait: its resource usage holds the peak memory
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                if end is not None and time.monotonic() > end and not reason:
                    os.killpg(process.pid, signal.SIGKILL)
                    reason = "DeadlineExceeded"
                time.sleep(0.05)
        code = process.returncode = os.waitstatus_to_exitcode(status)
        peak = usage.ru_maxrss * 1024  # KiB on Linux

        def read(path: str) -> str | None:
            file = Path(local(path))
            return file.read_text() if file.is_file() else None

        outputs, missing = _outputs(step.template, read)
        shutil.rmtree(folder, ignore_errors=True)
        seconds = time.monotonic() - start
        if reason:
            return Attempt(FAILED, code, reason, seconds, peak)
        if code != 0:
            return Attempt(FAILED, code, f"exit {code}", seconds, peak)
        if missing:
            return Attempt(ERROR, code, missing, seconds, peak)
        return Attempt(SUCCEEDED, 0, "", seconds, peak, outputs)


class DockerRunner:
    def __init__(self, namespace: str, documents: list[dict], network: str,
                 images: dict[str, str] | None = None):  # fmt: skip
        self.namespace, self.documents, self.network = namespace, documents, network
        self.images = images or {}

    def run(self, step: ContainerStep) -> Attempt:
        template = step.template
        container = dict(template["container"], name="main")
        container["image"] = self.images.get(container["image"], container["image"])
        name = re.sub(r"[^a-z0-9-]", "-", step.name.lower())[-50:].strip("-")
        pod = kubelet.Pod(
            namespace=self.namespace,
            kind="Workflow",
            name=name,
            spec={
                "containers": [container],
                "volumes": template.get("volumes", []),
                "securityContext": step.pod_security,
            },
        )
        start = time.monotonic()
        try:
            started = kubelet.run(pod, self.documents, network=self.network,
                                 name=f"mlsys-step-{name}-{uuid.uuid4().hex[:6]}")  # fmt: skip
        except kubelet.CreateContainerConfigError as error:
            step.log.write_text(f"CreateContainerConfigError: {error}\n")
            return Attempt(ERROR, reason=f"CreateContainerConfigError: {error}")
        try:
            peak, reason = self._wait(started, step.deadline)
            step.log.write_text(started.logs(tail=100_000))
            state = started.state()
            code_text = started.inspect("{{.State.ExitCode}}")
            code = int(code_text) if code_text.lstrip("-").isdigit() else None
            seconds = time.monotonic() - start
            if reason:
                return Attempt(FAILED, code, reason, seconds, peak)
            if state == "OOMKilled":
                return Attempt(FAILED, code, "OOMKilled", seconds, memory_limit(template))
            if state != "Completed":
                return Attempt(FAILED, code, state, seconds, peak)
            outputs, missing = _outputs(template, lambda path: self._read(started, template, path))
            if missing:
                return Attempt(ERROR, code, missing, seconds, peak)
            return Attempt(SUCCEEDED, 0, "", seconds, peak, outputs)
        finally:
            started.stop()

    def _wait(self, started: kubelet.Started, deadline: float | None) -> tuple[int | None, str]:
        """Until the container exits (or its deadline: killed), sampling its cgroup's peak."""
        identifier = started.inspect("{{.Id}}")
        end = time.monotonic() + deadline if deadline is not None else None
        peak = None
        while started.running():
            peak = _cgroup_peak(identifier) or peak
            if end is not None and time.monotonic() > end:
                subprocess.run([kubelet.docker(), "kill", started.name], capture_output=True)
                return peak, "DeadlineExceeded"
            time.sleep(0.2)
        return peak, ""

    def _read(self, started: kubelet.Started, template: dict, path: str) -> str | None:
        """A file the step left: in one of its volumes (their host folders), else in its
        container's filesystem (`docker cp`)."""
        mounts = template["container"].get("volumeMounts", [])
        for mount in sorted(mounts, key=lambda m: len(m["mountPath"]), reverse=True):
            root = mount["mountPath"].rstrip("/")
            if path == root or path.startswith(root + "/"):
                file = started.files / "volumes" / mount["name"] / path[len(root) :].lstrip("/")
                return file.read_text() if file.is_file() else None
        result = subprocess.run([kubelet.docker(), "cp", f"{started.name}:{path}", "-"],
                                capture_output=True)  # fmt: skip
        if result.returncode != 0:
            return None
        with tarfile.open(fileobj=io.BytesIO(result.stdout)) as archive:
            member = archive.next()
            handle = archive.extractfile(member) if member else None
            return handle.read().decode() if handle else None


def _cgroup_peak(identifier: str) -> int | None:
    """The container's peak memory so far: cgroup v1's max_usage_in_bytes or v2's
    memory.peak, where this machine keeps them."""
    for path in (
        f"/sys/fs/cgroup/memory/docker/{identifier}/memory.max_usage_in_bytes",
        f"/sys/fs/cgroup/system.slice/docker-{identifier}.scope/memory.peak",
        f"/sys/fs/cgroup/docker/{identifier}/memory.peak",
    ):
        try:
            return int(Path(path).read_text())
        except (OSError, ValueError):
            continue
    return None
