"""Argo CronWorkflow of AIAnimals moderation, written with Hera.

`make argo` compiles it to the YAML beside this file, with the others.

Weekly: the no-animal classifier is retrained on the dataset's training photos and the
labels moderators' decisions made (never in validation or test), and promoted only if its
ROC AUC beats the champion's on the same test photos; the classifier server reloads the
champion within 30 seconds of the alias moving. The first champion: run it once now,

    argo -n aianimals submit --from cronwf/violation-retrain

For a demo where moderators' decisions should show in the next model within hours, run it
every 6 hours without recompiling:

    kubectl -n aianimals patch cronworkflow violation-retrain \\
        --type merge -p '{"spec": {"schedules": ["0 */6 * * *"]}}'
"""

from hera.workflows import DAG, CronWorkflow
from steps import PHOTO_SAMPLE, PHOTO_SAMPLE_ARGS, cron, job

NAMESPACE = "aianimals"


def violation_retrain() -> CronWorkflow:
    """Every Sunday 03:00: retrain with the moderators' labels -> gate and promote."""
    with cron("violation-retrain", NAMESPACE, "0 3 * * 0", "weekly", PHOTO_SAMPLE) as workflow:
        retrain = job(
            "retrain",
            "mlsys-violation-detection",
            ["retrain", *PHOTO_SAMPLE_ARGS],
            peak_mib=3030,
            tracking=True,
        )
        with DAG(name="weekly"):
            retrain()
    return workflow


WORKFLOWS = [violation_retrain]
