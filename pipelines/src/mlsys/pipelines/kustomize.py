"""A kustomization rendered as `kubectl kustomize` renders it, for what the platform's use:
local resources, the namespace, ConfigMap and Secret generators (env files, files,
literals) with kustomize's name suffix hash unless disabled, the references to generated
objects in pod templates rewritten to the suffixed names, image replacements, and
strategic-merge patches from files (maps merged, lists of named items merged by name).

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
# libyaml's loader where PyYAML has it: Argo's vendored install is 11 MB of YAML.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_all(text: str) -> list[dict]:
    return [document for document in yaml.load_all(text, Loader=LOADER) if document]


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


def merged(target, patch):
    """A strategic merge patch applied: maps merged key by key, lists of maps that all have
    a `name` (containers, volumes, env) merged item by item, anything else replaced."""
    if isinstance(target, dict) and isinstance(patch, dict):
        return {
            **target,
            **{k: merged(target[k], v) if k in target else v for k, v in patch.items()},
        }
    if isinstance(target, list) and isinstance(patch, list) and named(target + patch):
        result = list(target)
        for item in patch:
            names = [old["name"] for old in result]
            if item["name"] in names:
                index = names.index(item["name"])
                result[index] = merged(result[index], item)
            else:
                result.append(item)
        return result
    return patch


def named(items: list) -> bool:
    return all(isinstance(item, dict) and "name" in item for item in items)


def patch_target(documents: list[dict], patch: dict) -> int:
    """The index of the object a patch names (kind, name, and namespace if it gives one)."""
    kind, meta = patch["kind"], patch["metadata"]
    for index, document in enumerate(documents):
        same = document["kind"] == kind and document["metadata"]["name"] == meta["name"]
        if same and meta.get("namespace") in (None, document["metadata"].get("namespace")):
            return index
    raise ValueError(f"no resource matches the patch of {kind}/{meta['name']}")


def render(folder: Path) -> list[dict]:
    """The objects `kubectl kustomize FOLDER` prints, for the features listed above.
    A resource that is not a local file (a fetched release) is left out."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    hashed = not kustomization.get("generatorOptions", {}).get("disableNameSuffixHash", False)
    documents = []
    for resource in kustomization.get("resources", []):
        if (folder / resource).is_file():
            documents += load_all((folder / resource).read_text())
    names: dict[tuple[str, str], str] = {}
    for key, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for entry in kustomization.get(key, []):
            document = generated(folder, entry, kind, hashed)
            names[(kind, entry["name"])] = document["metadata"]["name"]
            documents.append(document)
    documents = copy.deepcopy(documents)
    for entry in kustomization.get("patches", []):
        if set(entry) != {"path"}:
            raise ValueError(f"{folder}: only patches from a file are rendered here: {entry}")
        for patch in load_all((folder / entry["path"]).read_text()):
            index = patch_target(documents, patch)
            documents[index] = merged(documents[index], patch)
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
        return load_all(output)
    return render(folder)
