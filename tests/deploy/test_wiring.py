"""Issue 11's wiring test: each rule of tests/deploy/wiring.py finds nothing in what is
deployed (the compose file, the rendered manifests, the Argo YAML and its documented demo
patches) and does find the fault it was written for, in the fixture holding that fault."""

import copy
from pathlib import Path

import pytest
import yaml

from tests.deploy import wiring
from tests.helpers.manifests import NAMESPACES, kustomization, local_resources, rendered
from tests.helpers.paths import ROOT

FAULTS = Path(__file__).with_name("faults")
ARGO = ROOT / "infrastructure/argo"
CRONS = {
    yaml.safe_load(p.read_text())["metadata"]["name"]: yaml.safe_load(p.read_text())
    for p in sorted(ARGO.glob("*.yaml"))
}
PATCHES = [
    patch
    for path in sorted(ARGO.glob("*.py"))
    for patch in wiring.documented_patches(path.read_text())
]


def fixture(name: str) -> dict:
    return yaml.safe_load((FAULTS / f"{name}.yaml").read_text())


def made_by(fault: dict):
    """The image -> writable directories of a fixture, in place of images.toml's."""
    return lambda image: fault["writable"].get(image.rsplit("/", 1)[-1].split(":")[0])


def test_every_fixture_is_used():
    used = {
        "compose-volume-root-owned", "claim-not-writable", "erlang-cookie",
        "job-not-reappliable", "shared-read-write-once", "demo-patch-schedule",
        "undeclared-parameter", "gate-judges-the-latest", "hashed-generated-names",
        "no-active-deadline",
    }  # fmt: skip
    assert {path.stem for path in FAULTS.glob("*.yaml")} == used


# Every mounted path is writable by the image's user.


def test_compose_volumes_mount_on_directories_the_images_make_for_their_user():
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    assert wiring.compose_volume_faults(compose) == []
    fault = fixture("compose-volume-root-owned")
    assert wiring.compose_volume_faults(fault["compose"], made_by(fault)) == [
        "compose mlflow: volume mlflow-artifacts on /mlflow/artifacts, not made by its image"
    ]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_claims_are_writable_by_the_images_user(manifests, namespace):
    assert wiring.claim_mount_faults(rendered(manifests / namespace)) == []


def test_a_claim_without_fs_group_on_a_directory_the_image_lacks_is_caught():
    fault = fixture("claim-not-writable")
    assert wiring.claim_mount_faults(fault["documents"], made_by(fault)) == [
        "mlflow: claim on /mlflow/artifacts is not writable by uid 10001 (no fsGroup, not "
        "made by the image)"
    ]


def test_no_fs_group_volume_holds_the_erlang_cookie(manifests):
    documents = [d for n in NAMESPACES for d in rendered(manifests / n)]
    assert wiring.erlang_cookie_faults(documents) == []
    assert any(d["metadata"]["name"] == "rabbitmq" for d in documents)  # it is looked at
    assert wiring.erlang_cookie_faults(fixture("erlang-cookie")["documents"]) == [
        "rabbitmq: fsGroup on the cookie's home"
    ]


# Every Job that names generated objects is re-appliable.


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_jobs_naming_generated_objects_are_replaced_on_deploy(manifests, namespace):
    folder = manifests / namespace
    assert wiring.job_reapply_faults(kustomization(folder), local_resources(folder)) == []


def test_a_job_that_would_block_the_next_apply_is_caught():
    fault = fixture("job-not-reappliable")
    assert wiring.job_reapply_faults(fault["kustomization"], fault["documents"]) == [
        "job aianimals-initial-load: not replaced on deploy",
        "job aianimals-initial-load: no ttlSecondsAfterFinished",
    ]


# Every volume shared by more than one pod is ReadWriteMany.


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_no_read_write_once_claim_is_shared(manifests, namespace):
    assert wiring.shared_claim_faults(rendered(manifests / namespace)) == []


def test_a_read_write_once_claim_of_two_replicas_and_a_job_is_caught():
    assert wiring.shared_claim_faults(fixture("shared-read-write-once")["documents"]) == [
        "claim photos is ReadWriteOnce, mounted by ['api', 'api', 'aianimals-initial-load']"
    ]


# Every CronWorkflow, and every documented patch of one, is valid for the Argo deployed.


@pytest.mark.parametrize("name", sorted(CRONS))
def test_cron_workflows_are_valid_for_argo(name):
    assert wiring.cron_workflow_faults(CRONS[name]) == []


@pytest.mark.parametrize("name", sorted(CRONS))
def test_every_run_has_a_deadline(name):
    assert wiring.deadline_faults(CRONS[name]) == []


def test_a_forbid_policy_without_a_deadline_is_caught():
    assert wiring.deadline_faults(fixture("no-active-deadline")["cron"]) == [
        "register-next-week: Forbid without activeDeadlineSeconds"
    ]


def test_the_documented_demo_patches_leave_valid_cron_workflows():
    assert {name for name, _ in PATCHES} == set(CRONS)
    for name, patch in PATCHES:
        patched = wiring.merge_patch(CRONS[name], patch)
        assert wiring.cron_workflow_faults(patched) == []
        assert patched["spec"]["schedules"] != CRONS[name]["spec"]["schedules"]  # it does


def test_the_former_demo_patch_is_caught():
    fault = fixture("demo-patch-schedule")
    patched = wiring.merge_patch(CRONS[fault["cron_workflow"]], fault["patch"])
    assert wiring.cron_workflow_faults(patched) == [
        "register-next-week: unknown key .spec.schedule",  # v4 has no such field
        "register-next-week: both spec.schedule and spec.schedules",
    ]


def test_a_parameter_read_but_not_declared_or_not_passed_is_caught():
    assert wiring.cron_workflow_faults(fixture("undeclared-parameter")["cron"]) == [
        "forecasting/promotion-gate: input parameter version is not declared",
        "forecasting/predict: input parameter week is not passed",
    ]


# Every step that consumes another's output receives it as a parameter.


@pytest.mark.parametrize("name", sorted(CRONS))
def test_steps_receive_what_earlier_steps_made_as_parameters(name):
    assert wiring.handoff_faults(CRONS[name]["spec"]["workflowSpec"]) == []


@pytest.mark.parametrize(
    ("cron", "gate"), [("forecasting", "promote"), ("search-ranker", "promote-ranker")]
)
def test_each_gate_is_looked_at(cron, gate):
    templates = CRONS[cron]["spec"]["workflowSpec"]["templates"]
    assert gate in wiring.CONSUMES
    assert any(t.get("container", {}).get("args", [""])[0] == gate for t in templates)


def test_a_gate_judging_the_latest_version_is_caught():
    assert wiring.handoff_faults(fixture("gate-judges-the-latest")["workflow"]) == [
        "promotion-gate: `promote` without --version from a parameter"
    ]


def test_a_version_not_fed_from_the_training_task_is_caught():
    workflow = copy.deepcopy(CRONS["forecasting"]["spec"]["workflowSpec"])
    for template in workflow["templates"]:
        for task in template.get("dag", {}).get("tasks", []):
            if task["name"] == "promotion-gate":
                task["depends"] = "validate-data"
    assert wiring.handoff_faults(workflow) == [
        "task promotion-gate: does not depend on backtest-train, whose output it reads"
    ]


# Every name a pod or an Argo template refers to is rendered by its namespace.


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_every_referenced_object_is_rendered(manifests, namespace):
    crons = [c for c in CRONS.values() if c["metadata"]["namespace"] == namespace]
    assert wiring.reference_faults(rendered(manifests / namespace), crons) == []


def test_generated_names_the_workflows_miss_are_caught():
    fault = fixture("hashed-generated-names")
    assert wiring.reference_faults(fault["documents"], [fault["cron"]]) == [
        "violation-retrain/retrain: ConfigMap platform-config is not rendered",
        "violation-retrain/retrain: Secret postgres-violation-detection is not rendered",
        "violation-retrain/retrain: Secret mlflow-credentials is not rendered",
    ]


def test_missing_keys_accounts_and_claims_are_caught():
    documents = [
        {"kind": "Secret", "metadata": {"name": "s"}, "data": {"A": ""}},
        {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {
            "serviceAccountName": "robot",
            "containers": [{"env": [{"name": "B", "valueFrom": {
                "secretKeyRef": {"name": "s", "key": "B"}}}]}],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "photos"}}],
        }}}},
    ]  # fmt: skip
    assert wiring.reference_faults(documents) == [
        "deployment d: ServiceAccount robot is not rendered",
        "deployment d: Secret s has no key B",
        "deployment d: PersistentVolumeClaim photos is not rendered",
    ]
