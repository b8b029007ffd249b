"""MLflow basics for every model of the platform: one tracking setup, batched metric
logging, the champion gate (an alias given only to a version that beats the champion), and
the champion as servers keep it (loaded in the background, reloaded when the alias moves).
What is logged and under which names belongs to each model's own package."""

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from mlsys.common.logging import get_logger
from mlsys.common.metrics import SERVED_MODELS
from mlsys.common.settings import mlflow_tracking_uri, platform_settings

if TYPE_CHECKING:
    import threading

    from mlflow.entities.model_registry import ModelVersion

log = get_logger(__name__)
# The alias serving loads and the gate moves, and how a model's loaders are asked for it
# (a version is a number or this).
CHAMPION = "champion"
CHAMPION_VERSION = f"@{CHAMPION}"


def model_uri(name: str, version: int | str) -> str:
    """The one way a registered model is addressed: `models:/NAME/3` for a version number,
    `models:/NAME@ALIAS` for an alias written `@ALIAS` (`CHAMPION_VERSION`)."""
    version = str(version)
    return f"models:/{name}{version}" if version.startswith("@") else f"models:/{name}/{version}"


def configure_tracking() -> str:
    """Point MLflow (tracking and registry) at the configured server or the local store
    (made or migrated first, see `_prepare_local_store`); return the tracking URI. Enough
    for a process that only loads registered models."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = mlflow_tracking_uri()
    # Not from MLFLOW_TRACKING_URI: set_tracking_uri exports it for subprocesses.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _prepare_local_store(uri)
    return uri


_PREPARED: set[str] = set()


def _prepare_local_store(uri: str) -> None:
    """Make or migrate a local SQLite store under a file lock, once per process: two
    processes making it at once (a job, and a server's first look at a store the job has
    just begun) collide in its schema migrations ("table _alembic_tmp_... already
    exists"). The lock is a file beside the store; the second one waits, then finds the
    tables made."""
    if uri in _PREPARED or not uri.startswith("sqlite:///"):
        return
    import fcntl

    from mlflow import MlflowClient

    path = Path(uri.removeprefix("sqlite:///"))
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)  # the tracking store's tables
        client.search_registered_models(max_results=1)  # the registry's
    _PREPARED.add(uri)


def configure_mlflow(experiment_name: str) -> str:
    """Point MLflow at the configured server or the local store and select (creating it
    if needed) the experiment; return the tracking URI."""
    import mlflow

    uri = configure_tracking()
    served = uri.startswith(("http://", "https://"))
    if mlflow.get_experiment_by_name(experiment_name) is None:
        # A server decides where artifacts go; the local store keeps them under MLSYS_HOME
        # instead of MLflow's default of the current directory.
        location = None if served else local_artifact_root().as_uri()
        mlflow.create_experiment(experiment_name, artifact_location=location)
    mlflow.set_experiment(experiment_name)
    return uri


def local_artifact_root() -> Path:
    return (platform_settings().home / "mlartifacts").resolve()


def log_metrics_batch(run_id: str, metrics: list[tuple[str, float, int]]) -> None:
    """Log many (key, value, step) metrics in a few requests instead of one per metric."""
    import time

    from mlflow.entities import Metric

    from mlflow import MlflowClient

    now = int(time.time() * 1000)
    entities = [Metric(key, float(value), now, step) for key, value, step in metrics]
    client = MlflowClient()
    for start in range(0, len(entities), 1000):  # the REST API accepts at most 1000 per call
        client.log_batch(run_id, metrics=entities[start : start + 1000])


@dataclass(frozen=True)
class Champion:
    version: int
    run_id: str
    metric: float | None


def run_of(version: "ModelVersion") -> str:
    """The run that logged a registered model version (ours always have one)."""
    if version.run_id is None:
        raise ValueError(f"model {version.name} version {version.version} has no run")
    return version.run_id


def current_champion(model_name: str, metric_key: str) -> Champion | None:
    from mlflow.exceptions import MlflowException

    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None
    run_id = run_of(version)
    metric = client.get_run(run_id).data.metrics.get(metric_key)
    return Champion(version=int(version.version), run_id=run_id, metric=metric)


@dataclass(frozen=True)
class Verdict:
    """The champion gate's judgement of a candidate version, and why."""

    model_name: str
    version: int
    metric_key: str
    candidate: float
    # What it had to beat: the champion scored now on the candidate's own evaluation data,
    # or, with no champion yet, the floor (a baseline); None: nothing to beat.
    reference: float | None
    champion_version: int | None
    higher_is_better: bool
    already_champion: bool = False
    ties_to_candidate: bool = False  # an equal score promotes (see `judge`)

    @property
    def beats(self) -> bool:
        if self.already_champion:
            return False
        if self.reference is None:
            return True
        if self.ties_to_candidate and self.candidate == self.reference:
            return True
        if self.higher_is_better:
            return self.candidate > self.reference
        return self.candidate < self.reference

    def describe(self) -> str:
        if self.already_champion:
            return f"version {self.version} is the champion already"
        if self.reference is None:
            against = "nothing to beat"
        elif self.champion_version is None:
            against = f"the baseline's {self.reference:.5f}"
        else:
            against = f"champion version {self.champion_version}: {self.reference:.5f}"
        figure = f"{self.metric_key}={self.candidate:.5f}"
        verdict = "promoted" if self.beats else "not promoted"
        return f"version {self.version} ({figure}; {against}): {verdict}"


def judge(
    model_name: str,
    version: int,
    metric_key: str,
    candidate: float,
    score_champion: Callable[[Champion], float],
    *,
    higher_is_better: bool = False,
    floor: float | None = None,
    ties_to_candidate: bool = False,
) -> Verdict:
    """The one champion gate's comparison: the champion (unless it is the candidate)
    scored by `score_champion` on the data the candidate was scored on; without a
    champion, `floor` (a baseline the first version must beat) when given. Lower is better
    (an error) unless `higher_is_better` (NDCG, AUC, recall). With `ties_to_candidate`, an
    equal score promotes: for a gate that scores the champion's recipe rather than its
    fitted model, where the same recipe ties exactly and the candidate saw newer data."""
    champion = current_champion(model_name, metric_key)
    if champion is not None and champion.version == version:
        return Verdict(model_name, version, metric_key, candidate, None, version,
                       higher_is_better, already_champion=True)  # fmt: skip
    reference = score_champion(champion) if champion is not None else floor
    return Verdict(
        model_name,
        version,
        metric_key,
        candidate,
        reference,
        champion.version if champion is not None else None,
        higher_is_better,
        ties_to_candidate=ties_to_candidate,
    )


def apply_verdict(verdict: Verdict) -> bool:
    """Give the candidate the champion alias if it beat what it had to, and record the
    verdict and its figures as the candidate version's tags (`gate.*`; a champion judged
    again keeps the tags that made it one). True when it was promoted."""
    from mlflow import MlflowClient

    log.info("%s", verdict.describe())
    if verdict.already_champion:
        return False
    client = MlflowClient()
    tags = {
        "gate.verdict": "promoted" if verdict.beats else "not promoted",
        "gate.metric": verdict.metric_key,
        "gate.candidate": f"{verdict.candidate:.6g}",
        "gate.reference": "" if verdict.reference is None else f"{verdict.reference:.6g}",
        "gate.champion_version": str(verdict.champion_version or ""),
    }
    for key, value in tags.items():
        client.set_model_version_tag(verdict.model_name, str(verdict.version), key, value)
    if verdict.beats:
        client.set_registered_model_alias(verdict.model_name, CHAMPION, str(verdict.version))
    return verdict.beats


def champion_gate(
    model_name: str,
    version: int,
    metric_key: str,
    candidate: float,
    score_champion: Callable[[Champion], float],
    *,
    higher_is_better: bool = False,
    floor: float | None = None,
    ties_to_candidate: bool = False,
) -> Verdict:
    """Judge the candidate against the champion on the same data and promote it if it
    wins (`judge`, then `apply_verdict`); every model's gate."""
    verdict = judge(model_name, version, metric_key, candidate, score_champion,
                    higher_is_better=higher_is_better, floor=floor,
                    ties_to_candidate=ties_to_candidate)  # fmt: skip
    apply_verdict(verdict)
    return verdict


Loaded = TypeVar("Loaded")


class ChampionWatch(Generic[Loaded]):
    """A server's copy of a registered model's champion: loaded in the background at start
    and again whenever the alias names another version (checked every `refresh_seconds`),
    so requests read `loaded` and never wait for MLflow. `loaded` is None until a version is
    loaded or while none is the champion, and `problem` then says why; when a reload fails
    the version loaded before is kept. `load(version)` makes what is served of a version;
    `what` names the model in `problem` (the ranker, the classifier); `on_change` is called
    after another version (or none, where one was) is served: what was computed with the
    one before is stale (cached answers)."""

    def __init__(
        self,
        model_name: str,
        load: Callable[[int], Loaded],
        refresh_seconds: float,
        what: str,
        on_change: Callable[[], None] | None = None,
    ):
        self.model_name, self.load, self.refresh_seconds = model_name, load, refresh_seconds
        self.what, self.on_change = what, on_change
        self.loaded: Loaded | None = None
        self.version: int | None = None
        self.registered_at: float | None = None  # the served version's, in epoch seconds
        self.problem = f"the {what} is loading"
        SERVED_MODELS.add(self)  # the process's metrics report what it serves

    def _none(self, problem: str) -> None:
        served = self.version
        self.loaded, self.version, self.problem = None, None, problem
        if served is not None:
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def refresh(self) -> None:
        """Load the champion if the alias names another version than the one served."""
        try:
            from mlflow.exceptions import MlflowException

            from mlflow import MlflowClient

            uri = mlflow_tracking_uri()
            if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
                # The local store is made by the first training run: nothing to load yet
                # (and creating it here would cost every server's start seconds).
                return self._none(f"no champion {self.what} is registered")
            configure_tracking()
            try:
                found = MlflowClient().get_model_version_by_alias(self.model_name, CHAMPION)
            except MlflowException:
                return self._none(f"no champion {self.what} is registered")
            version = int(found.version)
            if version != self.version:
                self.loaded, self.version, self.problem = self.load(version), version, ""
                self.registered_at = found.creation_timestamp / 1000
                log.info("serving %s/%s", self.model_name, version)
                self._changed()
        except Exception as error:  # MLflow unreachable, a broken artifact: keep serving
            if self.loaded is None:
                self.problem = f"the {self.what} could not be loaded: {error!r}"
            log.warning("refreshing %s failed error=%r (serving version %s)",
                        self.model_name, error, self.version)  # fmt: skip

    def start(self, stop: "threading.Event") -> "threading.Thread":
        """Refresh now and every `refresh_seconds` in a daemon thread, until `stop` is set."""
        import threading

        def loop() -> None:
            while not stop.is_set():
                self.refresh()
                stop.wait(self.refresh_seconds)

        thread = threading.Thread(target=loop, name=f"{self.model_name}-refresh", daemon=True)
        thread.start()
        return thread
