"""A rendered pod started as a container, as the kubelet would start it: the environment
assembled from the namespace's rendered ConfigMaps and Secrets by the names the pod spec
uses (a missing object or key refuses the pod: CreateContainerConfigError), `$(VAR)` in
command and args expanded, the command and args of the manifest, its user and groups, a
read-only root filesystem with its emptyDirs as tmpfs of their size limits, its
ConfigMap and Secret volumes, its memory limit, dropped capabilities; then its readiness
probe within the time its probes allow, or its completion and exit status.

Containers join one Docker network; a Service's cluster DNS names are network aliases of
the container that backs it.
"""

import base64
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def docker() -> str:
    """The client: $DOCKER, else Debian's /usr/bin/docker where it is (it builds with
    BuildKit without the buildx plugin; infrastructure/images.py picks it the same way),
    else `docker` on PATH."""
    if os.environ.get("DOCKER"):
        return os.environ["DOCKER"]
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class CreateContainerConfigError(Exception):
    """The kubelet refuses to create the container (its event's reason and message)."""


@dataclass
class Pod:
    """One workload of a rendered namespace: its kind/name and pod template."""

    namespace: str
    kind: str
    name: str
    spec: dict
    labels: dict = field(default_factory=dict)
    claims: list[str] = field(default_factory=list)  # a StatefulSet's volumeClaimTemplates

    @property
    def container(self) -> dict:
        return self.spec["containers"][0]

    @property
    def image(self) -> str:
        return self.container["image"]


def workloads(documents: list[dict]) -> list[Pod]:
    pods = []
    for document in documents:
        if document["kind"] in {"Deployment", "StatefulSet", "Job"}:
            template = document["spec"]["template"]
            pods.append(
                Pod(
                    namespace=document["metadata"].get("namespace", "default"),
                    kind=document["kind"],
                    name=document["metadata"]["name"],
                    spec=template["spec"],
                    labels=template.get("metadata", {}).get("labels", {}),
                    claims=[
                        claim["metadata"]["name"]
                        for claim in document["spec"].get("volumeClaimTemplates", [])
                    ],
                )
            )
    return pods


def quantity(value: str | int) -> int:
    """A Kubernetes quantity in bytes (512Mi, 1Gi, 256M)."""
    text = str(value)
    for unit, factor in UNITS.items():
        if text.endswith(unit):
            return int(float(text.removesuffix(unit)) * factor)
    return int(text)


def _objects(documents: list[dict], kind: str, namespace: str) -> dict[str, dict[str, str]]:
    found = {}
    for document in documents:
        if document["kind"] == kind and document["metadata"].get("namespace") == namespace:
            data = document.get("data", {}) or {}
            if kind == "Secret":
                data = {k: base64.b64decode(v).decode() for k, v in data.items()}
            found[document["metadata"]["name"]] = data
    return found


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined variables replaced, `$$` escapes."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return re.sub(r"\$\$|\$\(([-._a-zA-Z0-9]+)\)", replace, text)


def environment(pod: Pod, documents: list[dict], container: dict | None = None) -> dict[str, str]:
    """The container's environment as the kubelet assembles it, or the error it reports."""
    container = container or pod.container
    maps = {
        "ConfigMap": _objects(documents, "ConfigMap", pod.namespace),
        "Secret": _objects(documents, "Secret", pod.namespace),
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if key not in source:
                continue
            name = source[key]["name"]
            if name not in maps[kind]:
                if source[key].get("optional"):
                    continue
                raise CreateContainerConfigError(f'{kind.lower()} "{name}" not found')
            for variable, value in maps[kind][name].items():
                if ENV_NAME.match(source.get("prefix", "") + variable):
                    env[source.get("prefix", "") + variable] = value
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = expand(str(variable["value"]), env)
            continue
        value_from = variable.get("valueFrom", {})
        for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if key not in value_from:
                continue
            ref = value_from[key]
            data = maps[kind].get(ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    break
                if data is None:
                    raise CreateContainerConfigError(f'{kind.lower()} "{ref["name"]}" not found')
                raise CreateContainerConfigError(
                    f"couldn't find key {ref['key']} in {kind} {pod.namespace}/{ref['name']}"
                )
            env[variable["name"]] = data[ref["key"]]
        if "fieldRef" in value_from:
            path = value_from["fieldRef"]["fieldPath"]
            fields = {"metadata.name": pod.name, "metadata.namespace": pod.namespace}
            env[variable["name"]] = fields.get(path, "")
        if "value" not in variable and not value_from:
            env[variable["name"]] = ""
    return env


def argv(container: dict, env: dict[str, str]) -> tuple[str | None, list[str]]:
    """(entrypoint, arguments): `command` replaces the image's entrypoint, `args` its CMD."""
    command = [expand(part, env) for part in container.get("command", [])]
    args = [expand(part, env) for part in container.get("args", [])]
    if command:
        return command[0], [*command[1:], *args]
    return None, args


def _volume_files(volume: dict, documents: list[dict], namespace: str, into: Path) -> Path:
    """A ConfigMap or Secret volume written as files (the kubelet's projection)."""
    if "configMap" in volume:
        kind, name = "ConfigMap", volume["configMap"]["name"]
        mode = volume["configMap"].get("defaultMode", 0o644)
    else:
        kind, name = "Secret", volume["secret"]["secretName"]
        mode = volume["secret"].get("defaultMode", 0o644)
    data = _objects(documents, kind, namespace).get(name)
    if data is None:
        raise CreateContainerConfigError(f'{kind.lower()} "{name}" not found')
    folder = into / volume["name"]
    folder.mkdir(parents=True)
    for key, value in data.items():
        (folder / key).write_text(value)
        (folder / key).chmod(mode)
    folder.chmod(0o755)
    return folder


@dataclass
class Started:
    """A running (or finished) container of a pod."""

    pod: Pod
    name: str
    files: Path

    def inspect(self, template: str) -> str:
        result = subprocess.run(
            [docker(), "inspect", "--format", template, self.name], capture_output=True, text=True
        )
        return result.stdout.strip()

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def address(self) -> str:
        return self.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")

    def logs(self, tail: int = 60) -> str:
        result = subprocess.run(
            [docker(), "logs", "--tail", str(tail), self.name], capture_output=True, text=True
        )
        return result.stdout + result.stderr

    def state(self) -> str:
        """The reason Kubernetes would show: Running, Completed, OOMKilled, Error (exit N)."""
        if self.running():
            return "Running"
        if self.inspect("{{.State.OOMKilled}}") == "true":
            return "OOMKilled"
        code = self.inspect("{{.State.ExitCode}}")
        return "Completed" if code == "0" else f"Error (exit {code})"

    def wait(self, timeout: float) -> str:
        """A Job's container to its end: its state."""
        subprocess.run(
            [docker(), "wait", self.name], capture_output=True, timeout=timeout, check=False
        )
        return self.state()

    def probe(self, probe: dict, timeout: float = 1) -> bool:
        """One run of a readiness or liveness probe."""
        if "httpGet" in probe:
            port = port_number(self.pod.container, probe["httpGet"]["port"])
            url = f"http://{self.address()}:{port}{probe['httpGet'].get('path', '/')}"
            try:
                with urllib.request.urlopen(url, timeout=max(timeout, 1)) as response:
                    return 200 <= response.status < 400
            except OSError:
                return False
        if "tcpSocket" in probe:
            port = port_number(self.pod.container, probe["tcpSocket"]["port"])
            with socket.socket() as connection:
                connection.settimeout(max(timeout, 1))
                return connection.connect_ex((self.address(), port)) == 0
        command = probe["exec"]["command"]
        result = subprocess.run(
            [docker(), "exec", self.name, *command], capture_output=True, timeout=timeout + 30
        )
        return result.returncode == 0

    def stop(self) -> None:
        subprocess.run([docker(), "rm", "-f", "-v", self.name], capture_output=True)
        for volume in sorted((self.files / "volumes").glob("*")):
            subprocess.run(["umount", str(volume)], capture_output=True)
        shutil.rmtree(self.files, ignore_errors=True)


def _volume_source(
    pod: Pod, mount: dict, volume: dict | None, documents: list[dict], files: Path, shared: dict
) -> Path:
    """The host folder a volume mount binds: a shared one, a claim (group-owned by fsGroup,
    as the kubelet makes it), an emptyDir (0777, its size limit), or the files of a
    ConfigMap or Secret."""
    name = mount["name"]
    if volume is None and name not in pod.claims:
        raise CreateContainerConfigError(f'volume "{name}" is not declared')
    if name in shared:
        return shared[name]
    if volume is None or "persistentVolumeClaim" in volume:
        gid = pod.spec.get("securityContext", {}).get("fsGroup", 0)
        return scratch(files / "volumes" / name, "2Gi", f"mode=2775,gid={gid}")
    if "emptyDir" in volume:
        return scratch(files / "volumes" / name, volume["emptyDir"].get("sizeLimit", "1Gi"),
                       "mode=0777")  # fmt: skip
    if "configMap" in volume or "secret" in volume:
        return _volume_files(volume, documents, pod.namespace, files)
    raise CreateContainerConfigError(f"volume {name}: a kind the local runner does not start")


def scratch(folder: Path, size: str | int, options: str) -> Path:
    """A volume of the pod: a tmpfs of the size limit, mounted here and bind-mounted into
    the container. (Docker's own --tmpfs takes the mode of the image's directory it covers,
    where the kubelet's emptyDir is always 0777.)"""
    folder.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={quantity(size)},{options}", "tmpfs", str(folder)],
        check=True,
        capture_output=True,
    )
    return folder


def port_number(container: dict, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise CreateContainerConfigError(f"no container port named {port}")


def readiness_deadline(container: dict) -> float:
    """Seconds within which the container must be ready: the startup probe's budget if it
    has one, else the liveness probe's (after it, the kubelet restarts the container),
    else the readiness probe's own (initial delay + failure threshold x period)."""
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        if kind in container:
            probe = container[kind]
            period = probe.get("periodSeconds", 10)
            return probe.get("initialDelaySeconds", 0) + probe.get("failureThreshold", 3) * period
    return 60


def run(
    pod: Pod,
    documents: list[dict],
    *,
    network: str,
    aliases: tuple[str, ...] = (),
    replace_image: dict[str, str] | None = None,
    overrides: dict[str, str] | None = None,
    shared: dict[str, Path] | None = None,
    name: str | None = None,
) -> Started:
    """Start the pod's first container detached, as the kubelet would (see the module).
    `replace_image`: official image -> stand-in; `overrides`: variables set on top of
    the manifest's; `shared`: volume name -> a host folder mounted instead of a fresh
    volume (each test says which and why)."""
    container = pod.container
    env = environment(pod, documents) | (overrides or {})
    entrypoint, arguments = argv(container, env)
    pod_security = pod.spec.get("securityContext", {})
    security = container.get("securityContext", {})
    files = Path(tempfile.mkdtemp(prefix="mlsys-pod-"))
    files.chmod(0o755)
    name = name or f"mlsys-test-{pod.name}-{files.name[-6:].lower()}"
    command = [docker(), "run", "--detach", "--name", name, "--network", network,
               "--hostname", pod.name[:63]]  # fmt: skip
    for alias in aliases:
        command += ["--network-alias", alias]
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    group = security.get("runAsGroup", pod_security.get("runAsGroup"))
    if user is not None:
        command += ["--user", f"{user}:{group if group is not None else user}"]
    if "fsGroup" in pod_security:
        command += ["--group-add", str(pod_security["fsGroup"])]
    if security.get("readOnlyRootFilesystem"):
        command.append("--read-only")
    if "ALL" in security.get("capabilities", {}).get("drop", []):
        command += ["--cap-drop", "ALL"]
    if security.get("allowPrivilegeEscalation") is False:
        command += ["--security-opt", "no-new-privileges"]
    limit = container.get("resources", {}).get("limits", {}).get("memory")
    if limit:
        command += ["--memory", str(quantity(limit)), "--memory-swap", str(quantity(limit))]
    volumes = {volume["name"]: volume for volume in pod.spec.get("volumes", [])}
    try:
        for mount in container.get("volumeMounts", []):
            source = _volume_source(pod, mount, volumes.get(mount["name"]), documents, files,
                                    shared or {})  # fmt: skip
            read_only = ",readonly" if mount.get("readOnly") or source.parent == files else ""
            command += ["--mount", f"type=bind,source={source},destination="
                        f"{mount['mountPath']}{read_only}"]  # fmt: skip
    except Exception:
        Started(pod=pod, name=name, files=files).stop()
        raise
    for variable in env:
        command += ["--env", variable]  # the value from this process's environment
    image = (replace_image or {}).get(pod.image, pod.image)
    if entrypoint is not None:
        command += ["--entrypoint", entrypoint]
    command += [image, *arguments]
    result = subprocess.run(command, capture_output=True, text=True, env=env | _client_env())
    if result.returncode != 0:
        Started(pod=pod, name=name, files=files).stop()
        raise RuntimeError(f"docker run {pod.name}: {result.stderr.strip()}")
    return Started(pod=pod, name=name, files=files)


def _client_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG")
    return {key: os.environ[key] for key in keep if key in os.environ}


def wait_ready(started: Started, deadline: float | None = None) -> float:
    """Seconds until the readiness probe passed; AssertionError naming the pod, its state
    and its last log lines when it did not within the deadline (or it stopped)."""
    container = started.pod.container
    probe = container.get("readinessProbe")
    assert probe, f"{started.pod.name} declares no readiness probe"
    budget = deadline if deadline is not None else readiness_deadline(container)
    start = time.monotonic()
    time.sleep(probe.get("initialDelaySeconds", 0))
    while time.monotonic() - start < budget:
        if not started.running():
            break
        if started.probe(probe, probe.get("timeoutSeconds", 1)):
            return time.monotonic() - start
        time.sleep(min(probe.get("periodSeconds", 10), 2))
    raise AssertionError(
        f"{started.pod.kind}/{started.pod.name} not ready within {budget:.0f} s "
        f"({started.state()}):\n{started.logs()}"
    )
