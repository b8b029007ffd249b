"""mlsys.pipelines.kustomize renders what `kubectl kustomize` renders (where kubectl is
here): the same objects, generated names suffixed or not alike, the same references in
pod templates, the same images. Suffixes themselves may differ (see the module)."""

import re
import shutil
import subprocess

import pytest
import yaml

from mlsys.pipelines import kustomize
from mlsys.pipelines.kustomize import render
from tests.helpers.manifests import NAMESPACES

SUFFIX = re.compile(r"-[a-z0-9]{10}$")


def shape(documents: list[dict], suffixes: dict[str, str]) -> list[str]:
    """Each object as YAML with its generated names' suffixes replaced by a marker."""
    ordered = sorted(documents, key=lambda d: (d["kind"], d["metadata"]["name"]))
    text = yaml.dump_all(ordered, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper))
    for name in suffixes:
        text = text.replace(name, suffixes[name])
    return text.splitlines()


def generated_names(documents: list[dict]) -> dict[str, str]:
    return {
        d["metadata"]["name"]: SUFFIX.sub("-<hash>", d["metadata"]["name"])
        for d in documents
        if d["kind"] in {"ConfigMap", "Secret"}
    }


@pytest.mark.slow  # kubectl kustomize of Argo's install: 16 s
@pytest.mark.parametrize("namespace", NAMESPACES)
def test_renders_as_kubectl_kustomize(manifests, namespace):
    folder = manifests / namespace
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not here to compare with")
    output = subprocess.run(["kubectl", "kustomize", str(folder)], check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    expected = kustomize.load_all(output)
    ours = render(folder)
    assert shape(ours, generated_names(ours)) == shape(expected, generated_names(expected))
