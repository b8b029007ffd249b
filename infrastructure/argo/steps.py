"""What every CronWorkflow step of the platform shares, written with Hera: a non-root pod,
a read-only image with scratch volumes, the namespace's ConfigMap and the PostgreSQL role
of the step's own component, retries, and the schedule's policies."""

import math
import os

from hera.workflows import (
    Container,
    CronWorkflow,
    EmptyDirVolume,
    Parameter,
    Resources,
    RetryStrategy,
)
from hera.workflows import models as m

SERVICE_ACCOUNT = "workflow"  # manifests/<namespace>/workflow-rbac.yaml
POD_SECURITY = m.PodSecurityContext(
    run_as_non_root=True,
    run_as_user=10001,
    run_as_group=10001,
    seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
)
RETRY = RetryStrategy(limit=2, retry_policy="OnFailure")
VERSION_FILE = "/tmp/registered-version"  # on the step's /tmp volume, read back by Argo
VERDICT_FILE = "/tmp/verdict"  # a check's `true` or `false`, read back by Argo likewise
# The steps that learn from the shipped photos: a workflow parameter whose default is the
# production run (every photo); the tests pass a small sample.
PHOTO_SAMPLE = {"photos": "all"}
PHOTO_SAMPLE_ARGS = ["--images", "/app/dataset/images", "--limit", "{{workflow.parameters.photos}}"]


# A step's memory limit: its measured peak (the runner's `peak MiB`, on the production-size
# data) times this, and never under MIN_LIMIT_MIB (an interpreter with its imports). The
# margin covers what a peak measured as resident memory leaves out (a cgroup also counts
# the page cache it cannot drop) and the data's growth until the next measurement.
MEMORY_MARGIN = 1.5
MIN_LIMIT_MIB = 512


def memory(peak_mib: int) -> Resources:
    """Requests what the step was measured to use; limited to that with the margin, in
    steps of 256 MiB."""
    limit = max(MIN_LIMIT_MIB, math.ceil(peak_mib * MEMORY_MARGIN / 256) * 256)
    return Resources(cpu_request="500m", memory_request=f"{peak_mib}Mi", memory_limit=f"{limit}Mi")


def job(
    name: str,
    image: str,
    args: list[str],
    peak_mib: int,
    retry: RetryStrategy | None = RETRY,
    tracking: bool = False,
    **io,
) -> Container:
    """A step running `python -m mlsys.<component> ARGS` in the component's image, its
    memory set from `peak_mib` (measured at production size, docs/deployment.md); with
    `tracking`, the tracking server's user too (steps that log runs or register models)."""
    component = image.removeprefix("mlsys-").replace("-", "_")
    # The namespace's ConfigMap, the PostgreSQL role of this component alone, and the
    # tracking server's user where the step uses it.
    env_from = [
        m.EnvFromSource(config_map_ref=m.ConfigMapEnvSource(name="platform-config")),
        m.EnvFromSource(
            secret_ref=m.SecretEnvSource(name=f"postgres-{image.removeprefix('mlsys-')}")
        ),
    ]
    if tracking:
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
        resources=memory(peak_mib),
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


# Each run ends within this, so that one stuck Pending (no node fits, an image that cannot
# be pulled) does not hold the Forbid concurrency policy forever; the longest, retraining the
# classifier at full size, takes minutes.
DEADLINE_SECONDS = 3 * 3600


def cron(
    name: str, namespace: str, schedule: str, entrypoint: str, parameters: dict | None = None
) -> CronWorkflow:
    """The schedule's CronWorkflow; `parameters` (name: production value) can be overridden
    per run (`argo submit --from cronwf/NAME -p NAME=VALUE`; the tests' small data)."""
    return CronWorkflow(
        name=name,
        namespace=namespace,
        schedules=[schedule],
        timezone="Asia/Tokyo",
        concurrency_policy="Forbid",
        starting_deadline_seconds=600,
        successful_jobs_history_limit=3,
        failed_jobs_history_limit=3,
        service_account_name=SERVICE_ACCOUNT,
        security_context=POD_SECURITY,
        entrypoint=entrypoint,
        active_deadline_seconds=DEADLINE_SECONDS,
        arguments=[Parameter(name=key, value=value) for key, value in (parameters or {}).items()],
    )
