"""Argo CronWorkflows of AIAnimals search, written with Hera: ranking, similar words and
similar images.

`make argo` compiles them to the YAML beside this file, with the forecasting ones.

Weekly: the online features are recomputed from the logs, the ranker and the regressor are
trained on the searches logged so far (the served one is registered, not promoted), and
the gate promotes that version only if it beats the champion on the same held-out searches.
The API reloads the champion within 30 seconds of the alias moving. Daily, the drift check
of the results the latest searches showed (docs/operations.md): when they moved away from
the champion's test searches, the same run. For a demo, run it every 30 minutes without
recompiling:

    kubectl -n aianimals patch cronworkflow search-ranker \\
        --type merge -p '{"spec": {"schedules": ["*/30 * * * *"]}}'
    kubectl -n aianimals patch cronworkflow ranker-drift \\
        --type merge -p '{"spec": {"schedules": ["15,45 * * * *"]}}'
"""

from hera.workflows import DAG, CronWorkflow, Parameter
from hera.workflows import models as m
from steps import PHOTO_SAMPLE, PHOTO_SAMPLE_ARGS, VERDICT_FILE, VERSION_FILE, cron, job

from mlsys.monitoring.ranker import WINDOW_DAYS as RANKER_WINDOW_DAYS

NAMESPACE = "aianimals"
RANKER_CHECK_PEAK_MIB = 2010  # the drift check's, measured: docs/deployment.md


def rank_dag() -> DAG:
    """features -> train ranker and regressor -> gate and promote: the weekly run, and the
    retraining a drift calls for (defined in the workflow being built)."""
    features = job("features", "mlsys-search", ["features"], peak_mib=1849)
    train = job(
        "train-ranker",
        "mlsys-search",
        ["train-ranker", "--no-promote", "--version-file", VERSION_FILE],
        peak_mib=1924,
        tracking=True,
        outputs=[Parameter(name="version", value_from=m.ValueFrom(path=VERSION_FILE))],
    )
    # The gate judges the version this run trained, not whichever is latest by then.
    gate = job(
        "promotion-gate",
        "mlsys-search",
        ["promote-ranker", "--version", "{{inputs.parameters.version}}"],
        peak_mib=1921,
        tracking=True,
        inputs=[Parameter(name="version")],
    )
    with DAG(name="rank") as dag:
        computed, trained = features(), train()
        computed >> trained
        trained >> gate(arguments={"version": trained.get_parameter("version")})
    return dag


def search_ranker() -> CronWorkflow:
    """Every Monday 04:00: features -> train ranker and regressor -> gate and promote."""
    with cron("search-ranker", NAMESPACE, "0 4 * * 1", "rank") as workflow:
        rank_dag()
    return workflow


def ranker_drift() -> CronWorkflow:
    """Every day at 03:30: the drift check of the results the week's searches showed; when
    it calls for retraining, the ranking run again (its gate still judges the result).
    Daily, so that a shift between two Mondays is answered within a day."""
    days = {"days": str(RANKER_WINDOW_DAYS)}
    with cron("ranker-drift", NAMESPACE, "30 3 * * *", "check", days) as workflow:
        check = job(
            "drift-check",
            "mlsys-monitoring",
            ["drift", "ranker", "--verdict-file", VERDICT_FILE,
             "--days", "{{workflow.parameters.days}}"],
            peak_mib=RANKER_CHECK_PEAK_MIB,
            tracking=True,
            outputs=[Parameter(name="drifted", value_from=m.ValueFrom(path=VERDICT_FILE))],
        )  # fmt: skip
        rank = rank_dag()
        with DAG(name="check"):
            checked = check()
            checked >> rank(name="retrain", when=f"{checked.get_parameter('drifted')} == true")
    return workflow


def image_index() -> CronWorkflow:
    """Every Monday 05:00: train the image embedding, judge it on the test photos, and if it
    beats the champion embed every post with it and promote it (one step: the posts are
    embedded before the alias moves, so the API never serves a half-built index). The API
    builds the new index within 30 seconds of the alias moving; the image-index consumer
    embeds new posts with the champion. The first champion: run it once now,

        argo -n aianimals submit --from cronwf/image-index

    For a demo, rebuild it every 2 hours without recompiling:

        kubectl -n aianimals patch cronworkflow image-index \\
            --type merge -p '{"spec": {"schedules": ["0 */2 * * *"]}}'
    """
    training = {**PHOTO_SAMPLE, "epochs": "30"}  # the tests train one epoch
    with cron("image-index", NAMESPACE, "0 5 * * 1", "weekly", training) as workflow:
        build = job(
            "build-image-index",
            "mlsys-search",
            ["build-image-index", *PHOTO_SAMPLE_ARGS, "--epochs", "{{workflow.parameters.epochs}}"],
            peak_mib=1409,
            tracking=True,
        )
        with DAG(name="weekly"):
            build()
    return workflow


def similar_words() -> CronWorkflow:
    """Every Monday 04:30: learn similar words from the posts and the searches logged so
    far, and promote the version only if its similar words find more of the latest
    searches' selected posts than the champion's (one step: the gate is part of the job).
    The API applies the champion within 30 seconds of the alias moving. The first one: run
    it once now,

        argo -n aianimals submit --from cronwf/similar-words

    For a demo, relearn every 30 minutes without recompiling:

        kubectl -n aianimals patch cronworkflow similar-words \\
            --type merge -p '{"spec": {"schedules": ["*/30 * * * *"]}}'
    """
    with cron("similar-words", NAMESPACE, "30 4 * * 1", "weekly") as workflow:
        learn = job(
            "similar-words", "mlsys-search", ["similar-words"], peak_mib=1638, tracking=True
        )
        with DAG(name="weekly"):
            learn()
    return workflow


WORKFLOWS = [search_ranker, ranker_drift, similar_words, image_index]
