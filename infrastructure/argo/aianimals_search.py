"""Argo CronWorkflow of AIAnimals search ranking, written with Hera.

`make argo` compiles it to the YAML beside this file, with the forecasting ones.

Weekly: the online features are recomputed from the logs, the ranker and the regressor are
trained on the searches logged so far (the served one is registered, not promoted), and
the gate promotes that version only if it beats the champion on the same held-out searches.
The API reloads the champion within 30 seconds of the alias moving. For a demo, run it
every 30 minutes without recompiling:

    kubectl -n aianimals patch cronworkflow search-ranker \\
        --type merge -p '{"spec": {"schedules": ["*/30 * * * *"]}}'
"""

from hera.workflows import DAG, CronWorkflow, Parameter
from hera.workflows import models as m
from steps import VERSION_FILE, cron, job

NAMESPACE = "aianimals"


def search_ranker() -> CronWorkflow:
    """Every Monday 04:00: features -> train ranker and regressor -> gate and promote."""
    with cron("search-ranker", NAMESPACE, "0 4 * * 1", "rank") as workflow:
        features = job("features", "mlsys-search", ["features"], memory="1Gi")
        train = job(
            "train-ranker",
            "mlsys-search",
            ["train-ranker", "--no-promote", "--version-file", VERSION_FILE],
            memory="3Gi",
            tracking=True,
            outputs=[Parameter(name="version", value_from=m.ValueFrom(path=VERSION_FILE))],
        )
        # The gate judges the version this run trained, not whichever is latest by then.
        gate = job(
            "promotion-gate",
            "mlsys-search",
            ["promote-ranker", "--version", "{{inputs.parameters.version}}"],
            memory="1Gi",
            tracking=True,
            inputs=[Parameter(name="version")],
        )
        with DAG(name="rank"):
            computed, trained = features(), train()
            computed >> trained
            trained >> gate(arguments={"version": trained.get_parameter("version")})
    return workflow


WORKFLOWS = [search_ranker]
