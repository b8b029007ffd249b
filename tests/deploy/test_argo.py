"""Argo CronWorkflows: the committed YAML is what Hera compiles, every key is one Argo
knows (Hera drops misspelled fields silently, so the YAML is checked against Hera's
generated Argo models and against the vendored release's CRD schema, unknown keys
rejected), and every step runs a real CLI."""

import importlib.util
import itertools
import re
from functools import cache

import hera.workflows.models
import jsonschema
import pytest
import yaml
from hera.workflows.models import CronWorkflow

from mlsys.pipelines.kubelet import quantity
from tests.deploy.wiring import unknown_keys
from tests.helpers.cli import run_cli
from tests.helpers.paths import ROOT

ARGO = ROOT / "infrastructure" / "argo"
spec = importlib.util.spec_from_file_location("argo_compile", ARGO / "compile.py")
argo_compile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(argo_compile)
COMMITTED = sorted(ARGO.glob("*.yaml"))


def test_committed_yaml_is_what_hera_compiles(monkeypatch):
    monkeypatch.delenv("REGISTRY", raising=False)
    monkeypatch.delenv("TAG", raising=False)
    compiled = argo_compile.compiled()
    assert sorted(compiled) == COMMITTED, "run `make argo`"
    for path, text in compiled.items():
        assert path.read_text() == text, (
            f"{path.name} differs from its Hera definition: run `make argo`"
        )


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_every_key_is_known_to_argo(path):
    document = yaml.safe_load(path.read_text())
    assert document["kind"] == "CronWorkflow"
    assert sorted(unknown_keys(document, CronWorkflow)) == []
    CronWorkflow.model_validate(document)


ARGO_INSTALL = ROOT / "infrastructure" / "manifests" / "argo"


def strict(schema):
    """A CRD schema as the API server's strict field validation applies it: a field that
    is not in an object's properties is refused (a structural schema would prune it)."""
    if isinstance(schema, dict):
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):  # fmt: skip
            schema["additionalProperties"] = False
        if schema.pop("x-kubernetes-int-or-string", False):
            schema.pop("type", None)
            schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


@cache
def vendored_cron_workflow_schema() -> jsonschema.Draft7Validator:
    """The CronWorkflow CRD of the Argo release deployed (manifests/argo/install.yaml)."""
    text = (ARGO_INSTALL / "install.yaml").read_text()
    for document in yaml.load_all(text, Loader=yaml.CSafeLoader):
        if document and document["metadata"]["name"] == "cronworkflows.argoproj.io":
            [version] = [v for v in document["spec"]["versions"] if v["name"] == "v1alpha1"]
            return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))
    raise AssertionError("the vendored install has no CronWorkflow CRD")


def test_every_workflow_fits_the_deployed_releases_crd():
    """Issue 31: the strict checks follow the release deployed, and Hera's models are of
    the same minor release."""
    validator = vendored_cron_workflow_schema()
    for path in COMMITTED:
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(
            yaml.safe_load(path.read_text()))]  # fmt: skip
        assert errors == [], path.name
    document = yaml.safe_load((ARGO / "forecasting.yaml").read_text())
    document["spec"]["workflowSpec"]["templates"][0]["container"]["imagePullPolicyy"] = "Always"
    assert ["'imagePullPolicyy' was unexpected" in e.message
            for e in validator.iter_errors(document)] == [True]  # fmt: skip
    release = (ARGO_INSTALL / "release.env").read_text()
    version = re.search(r"^ARGO_VERSION=(v(\d+\.\d+)\.\d+)$", release, flags=re.M)
    models = re.search(r"argo-workflows/v(\d+\.\d+)\.\d+/", hera.workflows.models.__doc__ or "")
    assert version and models and version.group(2) == models.group(1), (version, models)
    install = (ARGO_INSTALL / "install.yaml").read_text()
    assert install.startswith(f"# Argo Workflows {version.group(1)} (commit ")
    images = set(re.findall(r"image: quay.io/argoproj/[\w-]+:(\S+)", install))
    assert images == {version.group(1)}


def test_a_misspelled_key_is_caught():
    document = yaml.safe_load((ARGO / "forecasting.yaml").read_text())
    document["spec"]["workflowSpec"]["templates"][0]["container"]["imagePullPolicyy"] = "Always"
    document["spec"]["concurencyPolicy"] = "Forbid"
    assert sorted(unknown_keys(document, CronWorkflow)) == [
        ".spec.concurencyPolicy",
        ".spec.workflowSpec.templates[0].container.imagePullPolicyy",
    ]


def test_forecasting_dag_order_and_safety():
    spec = yaml.safe_load((ARGO / "forecasting.yaml").read_text())["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    workflow = spec["workflowSpec"]
    assert workflow["serviceAccountName"] == "workflow"
    dag = next(t for t in workflow["templates"] if t["name"] == workflow["entrypoint"])["dag"]
    order = [(t["name"], t.get("depends")) for t in dag["tasks"]]
    assert order == [
        ("validate-data", None),
        ("backtest-train", "validate-data"),
        ("promotion-gate", "backtest-train"),
        ("predict", "promotion-gate"),
    ]


def test_search_ranker_dag_order_and_safety():
    spec = yaml.safe_load((ARGO / "search-ranker.yaml").read_text())["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["workflowSpec"]["serviceAccountName"] == "workflow"
    workflow = spec["workflowSpec"]
    dag = next(t for t in workflow["templates"] if t["name"] == workflow["entrypoint"])["dag"]
    order = [(t["name"], t.get("depends")) for t in dag["tasks"]]
    assert order == [
        ("features", None),
        ("train-ranker", "features"),
        ("promotion-gate", "train-ranker"),
    ]
    train = next(t for t in workflow["templates"] if t["name"] == "train-ranker")
    assert "--no-promote" in train["container"]["args"]  # only the gate promotes


MANIFESTS = ROOT / "infrastructure/manifests"
# The steps that log runs or register models: the only ones given the tracking server's user.
TRACKING = {
    ("mlsys.ml", None),
    ("mlsys.monitoring", "drift"),  # both checks
    ("mlsys.search", "train-ranker"),
    ("mlsys.search", "promote-ranker"),
    ("mlsys.search", "build-image-index"),
    ("mlsys.search", "similar-words"),
    ("mlsys.violation_detection", "retrain"),
}


def test_workflow_pods_filter_syscalls_with_the_runtime_default():
    for path in COMMITTED:
        workflow = yaml.safe_load(path.read_text())["spec"]["workflowSpec"]
        assert workflow["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert workflow["securityContext"]["runAsNonRoot"] is True


def steps():
    for path in COMMITTED:
        cron = yaml.safe_load(path.read_text())
        for template in cron["spec"]["workflowSpec"]["templates"]:
            if "container" in template:
                namespace = cron["metadata"]["namespace"]
                yield pytest.param(template, namespace, id=f"{path.stem}/{template['name']}")


@pytest.mark.parametrize(("template", "namespace"), list(steps()))
def test_each_step_runs_a_real_command_with_retries_and_resources(template, namespace):
    container = template["container"]
    if template["name"] == "validate-data":  # fails on purpose on bad data: never retried
        assert "retryStrategy" not in template
    else:
        assert template["retryStrategy"]["limit"] >= 1
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    scratch = {v["name"]: v["emptyDir"]["sizeLimit"] for v in template["volumes"]}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/home/mlsys"}
    assert all(scratch.values())
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    # The request is the step's measured peak (docs/deployment.md); the limit leaves a
    # margin above it, never the one limit for every step that starved retraining.
    peak, limit = (
        quantity(container["resources"][kind]["memory"]) for kind in ("requests", "limits")
    )
    assert limit >= max(1.5 * peak, 512 * 2**20)
    refs = {(s.get("configMapRef") or s.get("secretRef"))["name"] for s in container["envFrom"]}
    module = container["command"][-1]
    # The namespace's ConfigMap and the PostgreSQL role of the step's own component alone
    # (both generated by the namespace's kustomization).
    role = "postgres-" + module.removeprefix("mlsys.").replace("_", "-")
    # The command (`drift classifier`: a group's too), then its options.
    command = list(itertools.takewhile(lambda arg: not arg.startswith("-"), container["args"]))
    subcommand, options = command[0], container["args"][len(command) :]
    tracks = {(module, None), (module, subcommand)} & TRACKING
    assert refs == {"platform-config", role} | ({"mlflow-credentials"} if tracks else set())
    kustomization = yaml.safe_load((MANIFESTS / namespace / "kustomization.yaml").read_text())
    assert refs - {"platform-config"} <= {g["name"] for g in kustomization["secretGenerator"]}
    help_text = run_cli(module, *command, "--help").stdout
    for option in (o for o in options if o.startswith("--")):
        assert option.split("=")[0] in help_text


WORKFLOW_NAMESPACES = sorted(
    {yaml.safe_load(path.read_text())["metadata"]["namespace"] for path in COMMITTED}
)


@pytest.mark.parametrize("namespace", WORKFLOW_NAMESPACES)
def test_workflow_service_account_has_a_namespaced_role(namespace):
    kustomization = yaml.safe_load((MANIFESTS / namespace / "kustomization.yaml").read_text())
    assert "workflow-rbac.yaml" in kustomization["resources"]
    rbac = list(yaml.safe_load_all((MANIFESTS / namespace / "workflow-rbac.yaml").read_text()))
    kinds = {d["kind"]: d for d in rbac}
    assert set(kinds) == {"ServiceAccount", "Role", "RoleBinding"}  # no ClusterRole
    assert kinds["Role"]["rules"] == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowtaskresults"],
            "verbs": ["create", "patch"],
        }
    ]


def test_violation_retrain_is_weekly_and_gated():
    """Issue 13: the original's cron typo retrained every minute of one hour."""
    spec = yaml.safe_load((ARGO / "violation-retrain.yaml").read_text())["spec"]
    assert spec["schedules"] == ["0 3 * * 0"] and spec["concurrencyPolicy"] == "Forbid"
    workflow = spec["workflowSpec"]
    assert workflow["serviceAccountName"] == "workflow"
    [step] = [t for t in workflow["templates"] if "container" in t]
    assert step["container"]["args"][0] == "retrain"  # trains, compares, promotes if better
    assert {"secretRef": {"name": "postgres-violation-detection"}} in step["container"]["envFrom"]


def test_similar_words_are_relearned_weekly_as_the_search_role():
    """Issue 14: one step, which learns, registers and gates (its own champion gate)."""
    spec = yaml.safe_load((ARGO / "similar-words.yaml").read_text())["spec"]
    assert spec["schedules"] == ["30 4 * * 1"] and spec["concurrencyPolicy"] == "Forbid"
    [step] = [t for t in spec["workflowSpec"]["templates"] if "container" in t]
    assert step["container"]["command"] == ["python", "-m", "mlsys.search"]
    assert step["container"]["args"] == ["similar-words"]
    assert {"secretRef": {"name": "postgres-search"}} in step["container"]["envFrom"]
    assert {"secretRef": {"name": "mlflow-credentials"}} in step["container"]["envFrom"]


def test_image_index_is_weekly_and_embeds_as_the_search_role():
    """Issue 14: the embedding and its index, rebuilt weekly; the job embeds every post
    before it promotes (one step), reading photos as the search role."""
    spec = yaml.safe_load((ARGO / "image-index.yaml").read_text())["spec"]
    assert spec["schedules"] == ["0 5 * * 1"] and spec["concurrencyPolicy"] == "Forbid"
    [step] = [t for t in spec["workflowSpec"]["templates"] if "container" in t]
    assert step["container"]["args"][:3] == ["build-image-index", "--images", "/app/dataset/images"]
    assert {"secretRef": {"name": "postgres-search"}} in step["container"]["envFrom"]
    assert {"secretRef": {"name": "mlflow-credentials"}} in step["container"]["envFrom"]


@pytest.mark.parametrize(
    ("name", "production"),
    [("image-index", {"epochs": "30", "photos": "all"}), ("violation-retrain", {"photos": "all"})],
)
def test_the_photo_sample_parameters_default_to_the_production_run(name, production):
    """Issue 31: the tests run these on small data through workflow parameters; a scheduled
    run takes their defaults, which are the command's own: every photo (and 30 epochs)."""
    workflow = yaml.safe_load((ARGO / f"{name}.yaml").read_text())["spec"]["workflowSpec"]
    defaults = {p["name"]: p["value"] for p in workflow["arguments"]["parameters"]}
    assert defaults == production
    [step] = [t for t in workflow["templates"] if "container" in t]
    args = step["container"]["args"]
    for parameter, option in (("epochs", "--epochs"), ("photos", "--limit")):
        if parameter in production:
            assert args[args.index(option) + 1] == f"{{{{workflow.parameters.{parameter}}}}}"
