"""Argo CronWorkflows of AIAnimals moderation, written with Hera.

`make argo` compiles it to the YAML beside this file, with the others.

Weekly: the no-animal classifier is retrained on the dataset's training photos and the
labels moderators' decisions made (never in validation or test), and promoted only if its
ROC AUC beats the champion's on the same test photos; the classifier server reloads the
champion within 30 seconds of the alias moving. The first champion: run it once now,

    argo -n aianimals submit --from cronwf/violation-retrain

Weekly too, the drift check of the posts the champion judged (docs/operations.md): when
the share it flags or its scores moved, the same retraining runs.

For a demo where moderators' decisions should show in the next model within hours, run it
every 6 hours without recompiling:

    kubectl -n aianimals patch cronworkflow violation-retrain \\
        --type merge -p '{"spec": {"schedules": ["0 */6 * * *"]}}'
    kubectl -n aianimals patch cronworkflow moderation-drift \\
        --type merge -p '{"spec": {"schedules": ["30 */6 * * *"]}}'
"""

from hera.workflows import DAG, Container, CronWorkflow, Parameter
from hera.workflows import models as m
from steps import PHOTO_SAMPLE, PHOTO_SAMPLE_ARGS, VERDICT_FILE, cron, job

from mlsys.monitoring.classifier import REFERENCE_DAYS, WINDOW_DAYS

NAMESPACE = "aianimals"
CHECK_PEAK_MIB = 302  # the drift check's, measured: docs/deployment.md


def retrain_step() -> Container:
    """Retrain with the moderators' labels, gate and promote: the weekly run, and the
    retraining a drift calls for (defined in the workflow being built)."""
    return job(
        "retrain",
        "mlsys-violation-detection",
        ["retrain", *PHOTO_SAMPLE_ARGS],
        peak_mib=3030,
        tracking=True,
    )


def violation_retrain() -> CronWorkflow:
    """Every Sunday 03:00: retrain with the moderators' labels -> gate and promote."""
    with cron("violation-retrain", NAMESPACE, "0 3 * * 0", "weekly", PHOTO_SAMPLE) as workflow:
        retrain = retrain_step()
        with DAG(name="weekly"):
            retrain()
    return workflow


def moderation_drift() -> CronWorkflow:
    """Every Monday 04:00: the drift check of the week's judged posts; when it calls for
    retraining, the retraining runs (its gate still judges the result). The windows are
    parameters: at a few hundred posts a week, a month against four tells more."""
    windows = {"days": str(WINDOW_DAYS), "reference-days": str(REFERENCE_DAYS)}
    with cron("moderation-drift", NAMESPACE, "0 4 * * 1", "check",
              {**windows, **PHOTO_SAMPLE}) as workflow:  # fmt: skip
        check = job(
            "drift-check",
            "mlsys-monitoring",
            [
                "drift",
                "classifier",
                "--verdict-file",
                VERDICT_FILE,
                *(
                    arg
                    for name in windows
                    for arg in (f"--{name}", f"{{{{workflow.parameters.{name}}}}}")
                ),
            ],
            peak_mib=CHECK_PEAK_MIB,
            tracking=True,
            outputs=[Parameter(name="drifted", value_from=m.ValueFrom(path=VERDICT_FILE))],
        )
        retrain = retrain_step()
        with DAG(name="check"):
            checked = check()
            checked >> retrain(when=f"{checked.get_parameter('drifted')} == true")
    return workflow


WORKFLOWS = [violation_retrain, moderation_drift]
