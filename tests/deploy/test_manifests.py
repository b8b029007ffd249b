"""Kubernetes manifests validate against the 1.30 schema with unknown fields rejected,
every variable a component receives is one its settings read, and every Secret a manifest
uses is created by `make secrets`. No cluster is needed."""

import re
import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.deploy.wiring import pods
from tests.helpers.cli import variables_read_by_components
from tests.helpers.manifests import NAMESPACES, kustomization, local_resources, rendered
from tests.helpers.paths import ROOT

KUBERNETES = "1.30.0"


def test_the_platform_namespaces_are_all_there():
    assert NAMESPACES == [
        "aianimals",
        "argo",
        "beverage-sales-forecasting",
        "data",
        "mlflow",
        "monitoring",
        "search-engine",
    ]


# Argo's vendored install is 11 MB of CRDs: validating it takes seconds (`slow`).
@pytest.mark.parametrize(
    "namespace", [pytest.param(n, marks=pytest.mark.slow) if n == "argo" else n for n in NAMESPACES]
)
def test_every_resource_validates_strictly(manifests, namespace):
    documents = rendered(manifests / namespace)
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_strict_validation_rejects_a_misspelled_field(manifests):
    deployment = next(
        d for d in rendered(manifests / "beverage-sales-forecasting") if d["kind"] == "Deployment"
    )
    deployment["spec"]["replicass"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


@pytest.mark.parametrize(
    ("namespace", "name"),
    [("data", "postgres"), ("aianimals", "rabbitmq"), ("search-engine", "elasticsearch")],
)
def test_data_services_are_statefulsets_with_claims_and_probes(manifests, namespace, name):
    service = next(
        d
        for d in rendered(manifests / namespace)
        if d["kind"] == "StatefulSet" and d["metadata"]["name"] == name
    )
    assert service["spec"]["volumeClaimTemplates"]
    container = service["spec"]["template"]["spec"]["containers"][0]
    assert {"readinessProbe", "livenessProbe", "resources"} <= set(container)


def test_every_pod_runs_as_non_root(manifests):
    for namespace in ("aianimals", "search-engine"):
        for document in rendered(manifests / namespace):
            pod = document.get("spec", {}).get("template", {}).get("spec")
            if pod:
                assert pod["securityContext"]["runAsNonRoot"] is True, document["metadata"]
                assert pod["automountServiceAccountToken"] is False


def test_only_prometheus_holds_a_service_account_token(manifests):
    """Its pod discovery reads the Kubernetes API (it may list the product namespaces'
    pods alone: prometheus-discovery.yaml); every other pod of ours mounts no token."""
    holders = []
    for namespace in set(NAMESPACES) - {"argo"}:  # Argo's vendored install talks to the API
        for document in rendered(manifests / namespace):
            pod = document.get("spec", {}).get("template", {}).get("spec")
            if pod and pod.get("automountServiceAccountToken") is not False:
                holders.append((namespace, document["metadata"]["name"]))
    assert holders == [("monitoring", "prometheus")]


def test_every_pod_filters_syscalls_with_the_runtime_default(manifests):
    """Issue 10, item 14: no seccompProfile anywhere."""
    for namespace in NAMESPACES:
        for document in rendered(manifests / namespace):
            pod = document.get("spec", {}).get("template", {}).get("spec")
            if pod:
                context = pod.get("securityContext", {})
                assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, (
                    namespace,
                    document["metadata"]["name"],
                )


def test_the_api_spools_uploads_into_a_bounded_volume(manifests):
    """A flood of uploads fills a size-limited emptyDir (and evicts the pod), not the node."""
    documents = rendered(manifests / "aianimals")
    (api,) = [d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "api"]
    pod = api["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    (tmp,) = [v for v in pod["volumes"] if v["name"] == mounts["/tmp"]]
    assert tmp["emptyDir"]["sizeLimit"] == "256Mi"
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


# Third-party images that write outside their volumes as they start: RabbitMQ's and
# Elasticsearch's entrypoints write configuration (the Erlang cookie's neighbours, the
# keystore) into directories of the image itself.
WRITABLE_ROOT = {"rabbitmq", "elasticsearch"}


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_every_container_has_a_read_only_root_and_bounded_scratch_space(manifests, namespace):
    for document in rendered(manifests / namespace):
        template = document.get("spec", {}).get("template")
        if not template:
            continue
        pod = template["spec"]
        sizes = {v["name"]: v["emptyDir"].get("sizeLimit") for v in pod.get("volumes", [])
                 if "emptyDir" in v}  # fmt: skip
        for container in pod.get("initContainers", []) + pod["containers"]:
            if container["name"] in WRITABLE_ROOT:
                continue
            where = f"{namespace}/{document['metadata']['name']}/{container['name']}"
            assert container["securityContext"].get("readOnlyRootFilesystem") is True, where
            scratch = [m for m in container.get("volumeMounts", []) if m["name"] in sizes]
            assert all(sizes[m["name"]] for m in scratch), f"{where}: an unbounded emptyDir"
            if container["image"].split("/")[-1].startswith("mlsys-"):
                assert "/tmp" in {m["mountPath"] for m in scratch}, f"{where}: no writable /tmp"


def containers(documents: list[dict]):
    for document in documents:
        spec = document.get("spec", {})
        pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get(
            "spec", {}
        ).get("template", {}).get("spec")
        yield from (pod or {}).get("initContainers", [])
        yield from (pod or {}).get("containers", [])


@pytest.mark.parametrize("namespace", ["mlflow", "beverage-sales-forecasting", "aianimals"])
def test_every_variable_passed_to_a_component_is_read_by_it(manifests, namespace):
    folder = manifests / namespace
    documents = rendered(folder)
    known = variables_read_by_components()
    env_files = {}
    for generator in kustomization(folder).get("configMapGenerator", []) + kustomization(
        folder
    ).get("secretGenerator", []):
        env_files[generator["name"]] = [
            line.split("=", 1)[0]
            for env in generator.get("envs", [])
            for line in (folder / env).read_text().splitlines()
            if "=" in line and not line.startswith("#")
        ]
    for container in containers(documents):
        if container["image"].split("/")[-1].split(":")[0] in {"redis", "rabbitmq"}:
            continue  # third-party servers read their own variables
        passed = {e["name"] for e in container.get("env", [])}
        for source in container.get("envFrom", []):
            reference = source.get("configMapRef") or source.get("secretRef")
            passed |= set(env_files[re.sub(r"-[a-z0-9]{10}$", "", reference["name"])])
        assert passed, container["name"]
        assert passed <= known, f"{container['name']}: not read by any settings: {passed - known}"


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_every_secret_used_is_created_by_make_secrets(manifests, namespace):
    folder = manifests / namespace
    generated = {g["name"] for g in kustomization(folder).get("secretGenerator", [])}
    for generator in kustomization(folder).get("secretGenerator", []):
        for env in generator["envs"]:
            assert (folder / env).is_file(), f"make secrets did not write {env}"
    used = set()
    for document in local_resources(folder):
        if document["kind"] == "CustomResourceDefinition":
            continue  # a schema (Argo's are megabytes) names no Secret
        text = yaml.safe_dump(document)
        used |= set(re.findall(r"secretKeyRef:\s*\n\s*key: \w+\n\s*name: ([\w-]+)", text))
        used |= set(re.findall(r"secretRef:\s*\n\s*name: ([\w-]+)", text))
    for workflow in (ROOT / "infrastructure/argo").glob("*.yaml"):  # applied apart
        if yaml.safe_load(workflow.read_text())["metadata"]["namespace"] == namespace:
            used |= set(re.findall(r"secretRef:\s*\n\s*name: ([\w-]+)", workflow.read_text()))
    assert used == generated, f"{namespace}: used {used}, created by make secrets {generated}"


def test_secret_env_files_are_never_committed():
    tracked = subprocess.run(
        ["git", "ls-files", "infrastructure"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "secrets/" not in tracked


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_every_container_says_when_its_image_is_pulled(manifests, namespace):
    """Issue 11, item 10: pull policies were implicit (and `:latest` means Always)."""
    for document in rendered(manifests / namespace):
        template = document.get("spec", {}).get("template")
        if template:
            pod = template["spec"]
            for container in pod.get("initContainers", []) + pod["containers"]:
                assert container.get("imagePullPolicy") == "IfNotPresent", container["name"]


def test_each_database_is_migrated_by_one_job_the_only_pod_with_the_owners_secret(manifests):
    """Issue 11, item 8: the initial-load Job and the index consumer raced to migrate the
    empty database; now one Job per database migrates and the workloads wait for it."""
    migrators = {}
    for namespace in NAMESPACES:
        for workload, pod, _ in pods(rendered(manifests / namespace)):
            containers = pod.get("initContainers", []) + pod["containers"]
            secrets = {
                re.sub(r"-[a-z0-9]{10}$", "", source["secretRef"]["name"])  # kustomize's hash
                for container in containers
                for source in container.get("envFrom", [])
                if "secretRef" in source
            }  # fmt: skip
            migrates = [c for c in containers if c.get("command", [])[-1:] == ["migrate"]]
            if "postgres-owner" in secrets:
                assert workload["kind"] == "Job" and len(containers) == 1 == len(migrates), (
                    f"{namespace}/{workload['metadata']['name']} holds the owner's password"
                )
                labels = workload["metadata"]["labels"]
                assert labels["mlsys.io/replaced-on-deploy"] == "true"  # each deploy migrates
                migrators[namespace] = workload["metadata"]["name"]
            else:
                assert not migrates, workload["metadata"]["name"]
    assert migrators == {
        "aianimals": "aianimals-migrate",
        "beverage-sales-forecasting": "beverage-migrate",
    }
    deploy = (ROOT / "infrastructure/scripts/deploy.sh").read_text()
    for namespace, job in migrators.items():  # deploy.sh waits for it, before the loads
        initial = deploy.index(f"wait_for {namespace} job/", deploy.index(f"job/{job}") + 1)
        assert deploy.index(f"wait_for {namespace} job/{job}") < initial
