"""`make deploy_job` against a real registry (Debian's docker-registry, the CNCF
distribution server): before anything is applied it looks up every image it will name
and stops, naming the missing ones (issue 30, item 5)."""

import shutil
import subprocess
import time

import pytest

from infrastructure.images import DEBIAN_BASES, docker
from tests.helpers.paths import ROOT
from tests.helpers.services import free_port, port_open, require

pytestmark = pytest.mark.container


@pytest.fixture
def registry(engine, tmp_path):
    binary = shutil.which("docker-registry")
    require(binary is not None, "Debian's docker-registry (`apt-get install docker-registry`)")
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    server = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        assert time.monotonic() < deadline and server.poll() is None, "registry did not start"
        time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


def push(reference: str) -> None:
    """A small image (the uv base) pushed under an image's name."""
    subprocess.run([docker(), "tag", DEBIAN_BASES["UV_IMAGE"], reference], check=True)
    subprocess.run([docker(), "push", reference], check=True, capture_output=True)
    subprocess.run([docker(), "rmi", reference], check=True, capture_output=True)


def deploy_job(registry: str, tmp_path) -> subprocess.CompletedProcess:
    # No cluster is ever reached: kubectl, where it exists, reads an empty configuration.
    (tmp_path / "kubeconfig").write_text("")
    return subprocess.run(
        ["make", "deploy_job", f"REGISTRY={registry}", "TAG=0123abcd0123",
         f"BUILT_RECORD={tmp_path / 'none'}", f"DOCKER={docker()}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "KUBECONFIG": str(tmp_path / "kubeconfig"),
             "HOME": str(tmp_path)},
    )  # fmt: skip


def test_deploy_stops_naming_the_images_missing_from_the_registry(registry, tmp_path):
    push(f"{registry}/mlsys-search:0123abcd0123")
    refused = deploy_job(registry, tmp_path)
    assert refused.returncode != 0
    named = refused.stderr.split("nothing applied:")[1].split("\n")[0].split()
    assert sorted(named) == [
        f"{registry}/mlsys-{name}:0123abcd0123"
        for name in ("data-registration", "ml", "monitoring", "violation-detection")
    ], refused.stderr
    assert "kubectl" not in refused.stdout, "something was applied before the check"
    for name in ("data-registration", "ml", "monitoring", "violation-detection"):
        push(f"{registry}/mlsys-{name}:0123abcd0123")
    passed = deploy_job(registry, tmp_path)
    # Past the check, the apply ran (with no cluster configured, or no kubectl, it fails).
    assert "nothing applied" not in passed.stderr and passed.stderr.strip(), passed.stderr
