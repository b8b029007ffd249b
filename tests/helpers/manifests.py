"""The Kubernetes manifests as the tests read them: a copy with the Secrets' env files that
`make secrets` writes, rendered by `kubectl kustomize` where kubectl is here."""

import copy
import hashlib
import shutil
import subprocess
from pathlib import Path

import yaml

from mlsys.pipelines import kustomize
from tests.helpers.paths import ROOT

MANIFESTS = ROOT / "infrastructure" / "manifests"
NAMESPACES = sorted(path.parent.name for path in MANIFESTS.glob("*/kustomization.yaml"))


def copy_with_secrets(destination: Path) -> Path:
    """A copy of the manifests with the Secrets' env files written by `make secrets`."""
    copy = destination / "manifests"
    shutil.copytree(MANIFESTS, copy, ignore=shutil.ignore_patterns("secrets"))
    subprocess.run(
        [
            "bash",
            str(ROOT / "infrastructure/scripts/make_secrets.sh"),
            str(copy),
            str(copy / "env.secret"),
        ],
        check=True,
        capture_output=True,
    )
    return copy


def kustomization(folder: Path) -> dict:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def local_resources(folder: Path) -> list[dict]:
    docs = []
    for resource in kustomization(folder)["resources"]:
        docs += kustomize.load_all((folder / resource).read_text())
    return docs


_RENDERED: dict[str, list[dict]] = {}


def rendered(folder: Path) -> list[dict]:
    """`kubectl kustomize` output where kubectl is here, else the same kinds of objects
    rendered by mlsys.pipelines.kustomize (whose name suffixes are not kustomize's digests,
    but suffixed and referred to the same way). Rendered once per content of the folder
    (Argo's vendored install takes seconds), a fresh copy each call."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    key = digest.hexdigest()
    if key not in _RENDERED:
        _RENDERED[key] = kustomize.rendered(folder)
    return copy.deepcopy(_RENDERED[key])
