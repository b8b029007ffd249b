"""The platform's rendered manifests started as containers from the images `make build_all`
built (infrastructure/images.built.env names them): one Docker network for the run, each
Service's cluster DNS names as aliases of the container behind it.

Backing services: the stand-ins of infrastructure/standins (PostgreSQL, Redis and RabbitMQ
from Debian's packages, `make standins`), started from the manifests' own StatefulSets and
Deployments with the official image swapped for the stand-in. Not this machine's servers:
the pods must meet their services with the credentials, database names, init script and
host names the manifests give them, which a shared server with the tests' own databases
cannot offer. Elasticsearch has neither a Debian package nor a stand-in: the AIAnimals
workloads run with SEARCH_ENGINE=local (see `AIANIMALS_OVERRIDES`).
"""

import base64
import subprocess
import uuid
from pathlib import Path

import pytest

from infrastructure.images import BUILT, IMAGES, STANDINS, docker
from mlsys.pipelines.kubelet import Pod, Started, run, scratch, wait_ready, workloads
from tests.helpers.manifests import NAMESPACES, copy_with_secrets, rendered
from tests.helpers.services import require

pytestmark = pytest.mark.container


def engine_answers() -> bool:
    try:
        return subprocess.run([docker(), "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def built() -> tuple[str, str]:
    """The registry and tag `make build_all` recorded."""
    require(BUILT.is_file(), f"images built by `make build_all` ({BUILT.name})")
    values = dict(line.split("=", 1) for line in BUILT.read_text().split())
    return values["REGISTRY"], values["TAG"]


def image_exists(reference: str) -> bool:
    inspected = subprocess.run([docker(), "image", "inspect", reference], capture_output=True)
    return inspected.returncode == 0


class Cluster:
    """The namespaces rendered, and the pods started from them on one network."""

    def __init__(self, folder: Path, registry: str, tag: str):
        self.network = f"mlsys-test-{uuid.uuid4().hex[:8]}"
        self.manifests = manifests = copy_with_secrets(folder)
        self.documents = {namespace: rendered(manifests / namespace) for namespace in NAMESPACES}
        self.registry, self.tag = registry, tag
        for documents in self.documents.values():
            self.name_built_images(documents)
        self.standins = {standin["replaces"]: standin["image"] for standin in STANDINS.values()}
        self.started: dict[tuple[str, str], Started] = {}
        self.folder = folder
        self.volumes: dict[str, Path] = {}
        subprocess.run([docker(), "network", "create", self.network], check=True,
                       capture_output=True)  # fmt: skip

    def name_built_images(self, documents: list[dict]) -> None:
        """The committed placeholders (localhost:5000/mlsys-*:latest) -> the images built,
        as deploy.sh names them."""
        for pod in workloads(documents):
            for container in pod.spec["containers"]:
                if container["image"].startswith("localhost:5000/mlsys-"):
                    name = container["image"].removeprefix("localhost:5000/").split(":")[0]
                    container["image"] = f"{self.registry}/{name}:{self.tag}"

    def pod(self, namespace: str, name: str) -> Pod:
        for pod in workloads(self.documents[namespace]):
            if pod.name == name:
                return pod
        raise KeyError(f"{namespace}: no workload {name}")

    def start(self, namespace: str, name: str, overrides: dict[str, str] | None = None,
              **options) -> Started:  # fmt: skip
        """Start a workload once; its Service's DNS names point at it."""
        if (namespace, name) in self.started:
            return self.started[(namespace, name)]
        aliases = [name, f"{name}.{namespace}", f"{name}.{namespace}.svc",
                   f"{name}.{namespace}.svc.cluster.local"]  # fmt: skip
        started = run(self.pod(namespace, name), self.documents[namespace],
                      network=self.network, aliases=aliases, replace_image=self.standins,
                      overrides=overrides, **options)  # fmt: skip
        self.started[(namespace, name)] = started
        return started

    def ready(self, namespace: str, name: str, **options) -> Started:
        started = self.start(namespace, name, **options)
        wait_ready(started)
        return started

    def complete(self, namespace: str, name: str, timeout: float, **options) -> Started:
        """A Job's container run to its end: it must complete."""
        started = self.start(namespace, name, **options)
        state = started.wait(timeout)
        assert state == "Completed", f"Job {namespace}/{name}: {state}\n{started.logs()}"
        return started

    def secret(self, namespace: str, name: str, key: str) -> str:
        for document in self.documents[namespace]:
            if document["kind"] == "Secret" and document["metadata"]["name"].startswith(name):
                return base64.b64decode(document["data"][key]).decode()
        raise KeyError(name)

    def volume(self, name: str, size: str) -> Path:
        """A volume several pods mount (where the cluster would share a service instead)."""
        if name not in self.volumes:
            self.volumes[name] = scratch(self.folder / "volumes" / name, size, "mode=0777")
        return self.volumes[name]

    def close(self) -> None:
        for started in self.started.values():
            started.stop()
        for volume in self.volumes.values():
            subprocess.run(["umount", str(volume)], capture_output=True)
        subprocess.run([docker(), "network", "rm", self.network], capture_output=True)


@pytest.fixture(scope="session")
def engine():
    require(engine_answers(), "a Docker engine (`make engine`)")


@pytest.fixture(scope="session")
def images(engine) -> tuple[str, str]:
    """The built images and stand-ins, all present (else the test names the missing)."""
    registry, tag = built()
    wanted = [f"{registry}/mlsys-{name.replace('_', '-')}:{tag}" for name, image in IMAGES.items()
              if "package" in image]  # fmt: skip
    wanted += [standin["image"] for standin in STANDINS.values()]
    missing = [reference for reference in wanted if not image_exists(reference)]
    assert not missing, f"not built: {missing} (`make standins build_all BASES=debian`)"
    return registry, tag


@pytest.fixture(scope="module")
def cluster(images, tmp_path_factory):
    """A module's pods, all stopped after it: a server left running would slow every
    later test of the run."""
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), *images)
    yield cluster
    cluster.close()
