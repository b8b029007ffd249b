"""A kustomization rendered as `kubectl kustomize` renders it, for what the platform's use:
local resources, the namespace, ConfigMap and Secret generators (env files, files,
literals) with kustomize's name suffix hash unless disabled, the references to generated
objects in pod templates rewritten to the suffixed names, and image replacements.

No Kubernetes binary need exist where the local runner and the tests run, and they must start each
pod with exactly the objects its namespace renders: a pod naming `platform-config` where
only `platform-config-<hash>` is rendered fails as the kubelet fails it.
"""

import base64
import copy
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import yaml

# What kustomize does not give a namespace (cluster-scoped kinds the platform uses).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "StorageClass",
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as kustomize reads `envs:` (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def name_hash(kind: str, name: str, data: dict[str, str], secret_type: str = "") -> str:
    """A content suffix in kustomize's alphabet: the first 10 hex digits of a SHA-256 of the
    object's kind, name and data, with 0 1 3 a e made g h k m t. (Not kustomize's exact
    digest: a pod must name the rendered object, whatever its suffix.)"""
    encoded: dict = {"kind": kind, "name": name, "data": data}
    if kind == "Secret":
        encoded["type"] = secret_type
    text = json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escape)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def generated(folder: Path, entry: dict, kind: str, hashed: bool) -> dict:
    data: dict[str, str] = {}
    for env_file in entry.get("envs", []):
        data |= read_env_file(folder / env_file)
    for file in entry.get("files", []):
        key, _, source = file.rpartition("=") if "=" in file else ("", "", file)
        data[key or Path(source).name] = (folder / source).read_text()
    for literal in entry.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    name = entry["name"]
    document: dict = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
    if kind == "Secret":
        secret_type = entry.get("type", "Opaque")
        document["type"] = secret_type
        document["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        suffix = name_hash(kind, name, document["data"], secret_type)
    else:
        document["data"] = data
        suffix = name_hash(kind, name, data)
    if hashed:
        document["metadata"]["name"] = f"{name}-{suffix}"
    return document


def pod_spec(document: dict) -> dict | None:
    if document.get("kind") in WORKLOADS:
        return document["spec"]["template"]["spec"]
    if document.get("kind") == "CronJob":
        return document["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def rename_references(spec: dict, names: dict[tuple[str, str], str]) -> None:
    """Point a pod template's references to generated objects at their rendered names."""

    def renamed(kind: str, name: str) -> str:
        return names.get((kind, name), name)

    # Where a pod names a ConfigMap or a Secret: envFrom sources, env values' key refs.
    references = (("configMapRef", "ConfigMap"), ("secretRef", "Secret"),
                  ("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret"))  # fmt: skip
    for container in containers(spec):
        sources = [*container.get("envFrom", [])]
        sources += [variable.get("valueFrom", {}) for variable in container.get("env", [])]
        for source in sources:
            for key, kind in references:
                if key in source:
                    source[key]["name"] = renamed(kind, source[key]["name"])
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            volume["configMap"]["name"] = renamed("ConfigMap", volume["configMap"]["name"])
        if "secret" in volume:
            volume["secret"]["secretName"] = renamed("Secret", volume["secret"]["secretName"])


def replace_images(spec: dict, images: list[dict]) -> None:
    for container in containers(spec):
        name, _, tag = container["image"].partition(":")
        for image in images:
            if image["name"] == name:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def render(folder: Path) -> list[dict]:
    """The objects `kubectl kustomize FOLDER` prints, for the features listed above.
    A resource that is not a local file (a fetched release) is left out."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    hashed = not kustomization.get("generatorOptions", {}).get("disableNameSuffixHash", False)
    documents = []
    for resource in kustomization.get("resources", []):
        if (folder / resource).is_file():
            documents += [d for d in yaml.safe_load_all((folder / resource).read_text()) if d]
    names: dict[tuple[str, str], str] = {}
    for key, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for entry in kustomization.get(key, []):
            document = generated(folder, entry, kind, hashed)
            names[(kind, entry["name"])] = document["metadata"]["name"]
            documents.append(document)
    documents = copy.deepcopy(documents)
    for document in documents:
        if "namespace" in kustomization and document["kind"] not in CLUSTER_SCOPED:
            document["metadata"]["namespace"] = kustomization["namespace"]
        if "namespace" in kustomization and document["kind"] == "RoleBinding":
            for subject in document.get("subjects", []):  # its ServiceAccounts are local
                if subject.get("kind") == "ServiceAccount" and "namespace" not in subject:
                    subject["namespace"] = kustomization["namespace"]
        spec = pod_spec(document)
        if spec is not None:
            rename_references(spec, names)
            replace_images(spec, kustomization.get("images", []))
    return documents


def rendered(folder: Path) -> list[dict]:
    """`kubectl kustomize` output where kubectl is here, else render()'s."""
    if shutil.which("kubectl"):
        output = subprocess.run(
            ["kubectl", "kustomize", str(folder)], check=True, capture_output=True, text=True
        ).stdout
        return [d for d in yaml.safe_load_all(output) if d]
    return render(folder)
