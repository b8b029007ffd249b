"""Argo CronWorkflows of beverage demand forecasting, written with Hera.

`make argo` compiles them to the YAML beside this file (committed; a test fails when it
differs from what these definitions compile to). `make deploy_job` applies the YAML.

Schedules are weekly. For a demo, run them every 10 minutes without recompiling (the
field is `schedules`, a list: Argo v4 has no `schedule` field and refuses it):

    kubectl -n beverage-sales-forecasting patch cronworkflow register-next-week \\
        --type merge -p '{"spec": {"schedules": ["*/10 * * * *"]}}'
    kubectl -n beverage-sales-forecasting patch cronworkflow forecasting \\
        --type merge -p '{"spec": {"schedules": ["5-59/10 * * * *"]}}'
    kubectl -n beverage-sales-forecasting patch cronworkflow forecast-drift \\
        --type merge -p '{"spec": {"schedules": ["8-59/10 * * * *"]}}'
"""

from hera.workflows import DAG, CronWorkflow, Parameter
from hera.workflows import models as m
from steps import VERDICT_FILE, VERSION_FILE, cron, job

NAMESPACE = "beverage-sales-forecasting"
# Whether validation and training read generated history: a workflow parameter whose
# default is the production value (never); the tests pass `true` to run on generated data.
GENERATED = {"generated": "false"}
GENERATED_ARG = "data.include_generated={{workflow.parameters.generated}}"


def register_next_week() -> CronWorkflow:
    """Every Monday 01:00: register the ISO week after the latest one in the database.
    The image's bundled sales file stands in for the weekly delivery."""
    with cron("register-next-week", NAMESPACE, "0 1 * * 1", "register") as workflow:
        job("register", "mlsys-data-registration", [
            "register",
            "--sales", "/app/dataset/beverage/item_sale_records_202107_202112.csv",
            "--latest-week-only",
        ], peak_mib=208)  # fmt: skip
    return workflow


def forecast_dag() -> DAG:
    """validate data -> backtest and train -> promotion gate -> predict: the weekly run, and
    the retraining a drift calls for (defined in the workflow being built)."""
    # Bad data fails it on purpose: a retry would only fail again.
    validate = job(
        "validate-data", "mlsys-ml", ["validate", GENERATED_ARG], peak_mib=281, retry=None,
        tracking=True,
    )  # fmt: skip
    train = job(
        "backtest-train",
        "mlsys-ml",
        ["train", "--no-promote", "--version-file", VERSION_FILE, GENERATED_ARG],
        peak_mib=371,
        tracking=True,
        outputs=[Parameter(name="version", value_from=m.ValueFrom(path=VERSION_FILE))],
    )
    # The gate judges the version this run trained, not whichever is latest by then.
    gate = job(
        "promotion-gate",
        "mlsys-ml",
        ["promote", "--version", "{{inputs.parameters.version}}"],
        peak_mib=328,
        tracking=True,
        inputs=[Parameter(name="version")],
    )
    predict = job("predict", "mlsys-ml", ["predict"], peak_mib=347, tracking=True)
    with DAG(name="forecast") as dag:
        validated, trained = validate(), train()
        validated >> trained
        trained >> gate(arguments={"version": trained.get_parameter("version")}) >> predict()
    return dag


def forecasting() -> CronWorkflow:
    """Every Monday 03:00: validate data -> backtest and train -> promotion gate -> predict."""
    with cron("forecasting", NAMESPACE, "0 3 * * 1", "forecast", GENERATED) as workflow:
        forecast_dag()
    return workflow


def forecast_drift() -> CronWorkflow:
    """Every Monday 05:00, after the week's forecast: the drift check of the champion; when
    it calls for retraining, the forecasting run again (its gate still judges the result)."""
    with cron("forecast-drift", NAMESPACE, "0 5 * * 1", "check", GENERATED) as workflow:
        check = job(
            "drift-check",
            "mlsys-monitoring",
            ["drift", "forecaster", "--verdict-file", VERDICT_FILE],
            peak_mib=309,
            tracking=True,
            outputs=[Parameter(name="drifted", value_from=m.ValueFrom(path=VERDICT_FILE))],
        )
        forecast = forecast_dag()
        with DAG(name="check"):
            checked = check()
            checked >> forecast(name="retrain", when=f"{checked.get_parameter('drifted')} == true")
    return workflow


WORKFLOWS = [register_next_week, forecasting, forecast_drift]
