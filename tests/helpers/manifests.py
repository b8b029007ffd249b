"""The Kubernetes manifests as the tests read them: a copy with the Secrets' env files that
`make secrets` writes, rendered by `kubectl kustomize` where kubectl is here."""

import shutil
import subprocess
from pathlib import Path

import yaml

from mlsys.pipelines import kustomize
from mlsys.pipelines.kustomize import render
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


def fetched(folder: Path, resource: str) -> bool:
    """Whether deploy.sh downloads the resource (a pinned release: argo's install.yaml)."""
    return resource.startswith("https://") or not (folder / resource).exists()


def local_resources(folder: Path) -> list[dict]:
    docs = []
    for resource in kustomization(folder)["resources"]:
        if not fetched(folder, resource):
            docs += [d for d in yaml.safe_load_all((folder / resource).read_text()) if d]
    return docs


def rendered(folder: Path) -> list[dict]:
    """`kubectl kustomize` output where kubectl is here and nothing must be downloaded,
    else the same kinds of objects rendered by mlsys.pipelines.kustomize (whose name suffixes
    are not kustomize's digests, but suffixed and referred to the same way)."""
    remote = any(fetched(folder, r) for r in kustomization(folder)["resources"])
    return render(folder) if remote else kustomize.rendered(folder)
