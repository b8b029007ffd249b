"""Argo CronWorkflows of beverage demand forecasting, written with Hera.

`make argo` compiles them to the YAML beside this file (committed; a test fails when it
differs from what these definitions compile to). `make deploy_job` applies the YAML.

Schedules are weekly. For a demo, run them every 10 minutes without recompiling (the
field is `schedules`, a list: Argo v3.6 refuses a CronWorkflow that has `schedule` too):

    kubectl -n beverage-sales-forecasting patch cronworkflow register-next-week \\
        --type merge -p '{"spec": {"schedules": ["*/10 * * * *"]}}'
    kubectl -n beverage-sales-forecasting patch cronworkflow forecasting \\
        --type merge -p '{"spec": {"schedules": ["5-59/10 * * * *"]}}'
"""

import os

from hera.workflows import (
    DAG,
    Container,
    CronWorkflow,
    EmptyDirVolume,
    Parameter,
    Resources,
    RetryStrategy,
)
from hera.workflows import models as m

NAMESPACE = "beverage-sales-forecasting"
SERVICE_ACCOUNT = "workflow"  # manifests/beverage-sales-forecasting/workflow-rbac.yaml
POD_SECURITY = m.PodSecurityContext(
    run_as_non_root=True,
    run_as_user=10001,
    run_as_group=10001,
    seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
)
RETRY = RetryStrategy(limit=2, retry_policy="OnFailure")
VERSION_FILE = "/tmp/registered-version"  # on the step's /tmp volume, read back by Argo


def job(
    name: str,
    image: str,
    args: list[str],
    memory: str = "1Gi",
    retry: RetryStrategy | None = RETRY,
    **io,
) -> Container:
    component = image.removeprefix("mlsys-").replace("-", "_")
    # The namespace's ConfigMap, the PostgreSQL role of this component alone, and the
    # tracking server's user where the step uses it.
    env_from = [
        m.EnvFromSource(config_map_ref=m.ConfigMapEnvSource(name="platform-config")),
        m.EnvFromSource(
            secret_ref=m.SecretEnvSource(name=f"postgres-{image.removeprefix('mlsys-')}")
        ),
    ]
    if component == "ml":  # the steps that track runs and register models
        env_from.append(m.EnvFromSource(secret_ref=m.SecretEnvSource(name="mlflow-credentials")))
    # Placeholders in the committed YAML: deploy.sh puts REGISTRY and TAG in what it applies
    registry, tag = os.environ.get("REGISTRY", "localhost:5000"), os.environ.get("TAG", "latest")
    return Container(
        name=name,
        image=f"{registry}/{image}:{tag}",
        image_pull_policy="IfNotPresent",  # deployed tags are immutable (the commit)
        command=["python", "-m", f"mlsys.{component}"],
        args=args,
        env_from=env_from,
        resources=Resources(cpu_request="500m", memory_request=memory, memory_limit="4Gi"),
        retry_strategy=retry,
        security_context=m.SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=m.Capabilities(drop=["ALL"]),
        ),
        # The only writable paths: MLflow stages artifacts in /tmp, libraries cache in ~.
        volumes=[
            EmptyDirVolume(name="tmp", mount_path="/tmp", size_limit="2Gi"),
            EmptyDirVolume(name="home", mount_path="/home/mlsys", size_limit="64Mi"),
        ],
        **io,
    )


def cron(name: str, schedule: str, entrypoint: str) -> CronWorkflow:
    return CronWorkflow(
        name=name,
        namespace=NAMESPACE,
        schedules=[schedule],
        timezone="Asia/Tokyo",
        concurrency_policy="Forbid",
        starting_deadline_seconds=600,
        successful_jobs_history_limit=3,
        failed_jobs_history_limit=3,
        service_account_name=SERVICE_ACCOUNT,
        security_context=POD_SECURITY,
        entrypoint=entrypoint,
    )


def register_next_week() -> CronWorkflow:
    """Every Monday 01:00: register the ISO week after the latest one in the database.
    The image's bundled sales file stands in for the weekly delivery."""
    with cron("register-next-week", "0 1 * * 1", "register") as workflow:
        job("register", "mlsys-data-registration", [
            "register",
            "--sales", "/app/dataset/beverage/item_sale_records_202107_202112.csv",
            "--latest-week-only",
        ])  # fmt: skip
    return workflow


def forecasting() -> CronWorkflow:
    """Every Monday 03:00: validate data -> backtest and train -> promotion gate -> predict."""
    with cron("forecasting", "0 3 * * 1", "forecast") as workflow:
        # Bad data fails it on purpose: a retry would only fail again.
        validate = job("validate-data", "mlsys-ml", ["validate"], memory="512Mi", retry=None)
        train = job(
            "backtest-train",
            "mlsys-ml",
            ["train", "--no-promote", "--version-file", VERSION_FILE],
            memory="2Gi",
            outputs=[Parameter(name="version", value_from=m.ValueFrom(path=VERSION_FILE))],
        )
        # The gate judges the version this run trained, not whichever is latest by then.
        gate = job(
            "promotion-gate",
            "mlsys-ml",
            ["promote", "--version", "{{inputs.parameters.version}}"],
            memory="2Gi",
            inputs=[Parameter(name="version")],
        )
        predict = job("predict", "mlsys-ml", ["predict"], memory="2Gi")
        with DAG(name="forecast"):
            validated, trained = validate(), train()
            validated >> trained
            trained >> gate(arguments={"version": trained.get_parameter("version")}) >> predict()
    return workflow


WORKFLOWS = [register_next_week, forecasting]
