"""docker-compose.yaml is valid Compose (unknown keys rejected), starts in dependency order
through healthchecks and completion conditions, and passes only variables the components
read. No Docker engine runs here, so this is what proves it."""

import re
import subprocess

import pydantic
import pytest
import yaml
from compose_pydantic.models import ComposeSpecification

from infrastructure.images import IMAGES
from tests.helpers.cli import variables_read_by_components
from tests.helpers.paths import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def spec_part(document: dict) -> dict:
    return {
        key: value for key, value in document.items() if not key.startswith("x-")
    }  # x-: extensions


def test_is_valid_compose_with_unknown_keys_rejected():
    ComposeSpecification.model_validate(spec_part(COMPOSE))
    broken = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    broken["services"]["bi"]["healthcheck"]["intervall"] = "5s"
    with pytest.raises(pydantic.ValidationError):
        ComposeSpecification.model_validate(spec_part(broken))


def test_the_forecasting_stack_is_there():
    assert set(SERVICES) >= {"postgres", "mlflow", "data-registration", "ml", "bi"}


def test_the_aianimals_stack_is_there():
    aianimals = {"redis", "rabbitmq", "elasticsearch", "aianimals-initial-load"}
    assert aianimals | {"outbox-relay", "search-index", "account-mail", "api"} <= set(SERVICES)
    assert SERVICES["api"]["environment"]["POSTGRES_DB"] == "aianimals"
    assert "aianimals" in (ROOT / "infrastructure/manifests/data/create-roles.sh").read_text()


def test_postgres_is_given_the_password_of_every_role_create_roles_makes():
    """Found with issue 13: the search role was added to create-roles.sh but its password
    not to the postgres service, so a first `make up` failed in the bootstrap script."""
    import re

    script = (ROOT / "infrastructure/manifests/data/create-roles.sh").read_text()
    roles = {
        f"{database}_{component}"
        for database, components in re.findall(r'^COMPONENTS_(\w+)="([^"]*)"', script, re.M)
        for component in components.split()
    }
    roles |= {
        f"{database}_owner"
        for database in re.findall(r'^DATABASES="([^"]*)"', script, re.M)[0].split()
    }
    given = set(SERVICES["postgres"]["environment"])
    assert {f"{role.upper()}_PASSWORD" for role in roles | {"mlflow"}} <= given


def test_our_services_run_the_images_make_builds():
    """No build sections: `make up` builds every image of images.toml first."""
    assert re.search(r"^up: secrets .*build_all", (ROOT / "Makefile").read_text(), re.M)
    for name, service in SERVICES.items():
        assert "build" not in service, name
    ours = {SERVICES[name]["image"] for name in OURS}
    names = {name.replace("_", "-") for name in IMAGES}
    assert ours == {
        f"${{REGISTRY:-localhost:5000}}/mlsys-{name}:${{TAG:-latest}}" for name in names
    }


def test_ordering_uses_health_and_completion_never_sleep():
    for name, service in SERVICES.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition["condition"] in {"service_healthy", "service_completed_successfully"}
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{name} waits on {dependency}"
        assert "sleep" not in str(service.get("command", "")) + str(service.get("entrypoint", ""))
    assert (
        SERVICES["ml"]["depends_on"]["data-registration"]["condition"]
        == "service_completed_successfully"
    )


def test_data_lives_in_named_volumes():
    assert set(COMPOSE["volumes"]) == {
        "postgres-data",
        "mlflow-artifacts",
        "rabbitmq-data",
        "elasticsearch-data",
        "prometheus-data",
        "grafana-data",
    }  # photos live in PostgreSQL (STORAGE_BACKEND=database): nothing shared on disk
    assert "postgres-data:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]


OURS = [n for n, s in SERVICES.items() if "/mlsys-" in s.get("image", "")]


@pytest.mark.parametrize("name", [n for n in OURS if n != "elasticsearch"])
def test_components_receive_only_variables_they_read(name):
    passed = set(SERVICES[name]["environment"])
    assert passed <= variables_read_by_components(), passed - variables_read_by_components()


def test_make_up_dry_run_prints_the_compose_commands():
    result = subprocess.run(
        ["make", "up", "down", "DRY_RUN=1"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert (
        "docker compose -f docker-compose.yaml --env-file env.secret up --detach" in result.stdout
    )
    assert "docker compose -f docker-compose.yaml --env-file env.secret down" in result.stdout
    # Where nothing can be pulled: the stand-ins' file after the one users run.
    standins = subprocess.run(
        ["make", "up", "DRY_RUN=1", "BASES=debian"], cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    assert ("docker compose -f docker-compose.yaml -f infrastructure/standins/compose.yaml "
            "--env-file env.secret up --detach") in standins  # fmt: skip


def test_published_ports_listen_on_this_host_only():
    """Issue 10, item 14: MLflow and the BI have no authentication of their own."""
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_our_services_run_on_a_read_only_root_with_a_bounded_tmp():
    ours = {
        name: service
        for name, service in SERVICES.items()
        if "/mlsys-" in service.get("image", "") and "elasticsearch" not in name
    }
    assert len(ours) >= 10
    for name, service in ours.items():
        assert service["read_only"] is True, name
        assert any(t.startswith("/tmp:size=") for t in service["tmpfs"]), name


ONE_SHOT = {
    "beverage-migrate", "data-registration", "ml", "forecast-drift", "aianimals-migrate",
    "aianimals-initial-load", "search-train-ranker", "search-similar-words",
    "search-build-image-index", "violation-detection-train",
}  # fmt: skip


def test_services_restart_and_jobs_retry_only_on_failure():
    """Issue 11, item 9: no restart policy anywhere."""
    for name, service in SERVICES.items():
        expected = "on-failure:3" if name in ONE_SHOT else "unless-stopped"
        assert service.get("restart") == expected, name
    # What the others wait for must end: a job restarted "unless-stopped" never completes.
    waited_for = {
        dependency
        for service in SERVICES.values()
        for dependency, condition in service.get("depends_on", {}).items()
        if condition["condition"] == "service_completed_successfully"
    }
    assert waited_for <= ONE_SHOT


def test_rabbitmq_keeps_its_node_name_and_so_its_queues():
    """Its data directory is named after rabbit@<hostname>; a container's id changes."""
    assert SERVICES["rabbitmq"]["hostname"] == "rabbitmq"
    assert any(v.endswith(":/var/lib/rabbitmq") for v in SERVICES["rabbitmq"]["volumes"])


def test_the_image_makes_its_writable_directories_owned_by_its_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'mkdir -p "$path" && chown 10001:10001 "$path"' in dockerfile
    assert "USER 10001" in dockerfile
    from infrastructure.images import build_command

    command = build_command("mlflow", "r", "t")
    assert "WRITABLE=/mlflow/artifacts" in command
