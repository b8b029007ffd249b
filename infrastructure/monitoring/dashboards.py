"""Grafana dashboards as code, one per system, built with Grafana's foundation SDK:
`make dashboards` writes each to `infrastructure/manifests/monitoring/dashboards/<uid>.json`,
which Grafana provisions. The committed JSON must equal what this builds, and every metric a panel
queries must be one the code exports (tests/deploy/test_monitoring.py).

Latency is always a quantile of the request histograms (`histogram_quantile` over the
buckets' rates), never the rate of the seconds' sum: that is time spent per second.
"""

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from mlsys.aianimals.image_index import IMAGE_EMBEDDING_MODEL_NAME
from mlsys.aianimals.moderation import CLASSIFIER_MODEL_NAME
from mlsys.aianimals.ranking import RANKER_MODEL_NAME
from mlsys.aianimals.similar_words import SIMILAR_WORDS_MODEL_NAME

HERE = Path(__file__).parent
OUTPUT = HERE.parent / "manifests" / "monitoring" / "dashboards"
# The Prometheus data source, provisioned with this uid (manifests/monitoring/grafana/).
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
RATE = "$__rate_interval"  # Grafana's window for rate(): at least four scrapes


def query(expression: str, legend: str = "") -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(expression).datasource(DATASOURCE)
    return target.legend_format(legend) if legend else target


def lettered(queries: tuple[prometheus.Dataquery, ...]) -> list[prometheus.Dataquery]:
    """A panel's queries, named A, B, ... as Grafana names them."""
    return [target.ref_id(chr(ord("A") + i)) for i, target in enumerate(queries)]


def graph(title: str, unit: str, *queries: prometheus.Dataquery) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(lettered(queries))
        .span(12)
        .height(8)
    )


def figure(title: str, unit: str, *queries: prometheus.Dataquery) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(lettered(queries))
        .span(6)
        .height(4)
    )


def board(uid: str, title: str, tags: list[str]) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .tags(["mlsys", *tags])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
    )


def requests(job: str) -> list[timeseries.Panel]:
    """A server's rate, errors and duration (RED), per route template."""
    selector = f'job="{job}",handler!="/metrics"'
    return [
        graph(
            "Requests per second by route",
            "reqps",
            query(
                f"sum by (handler) (rate(http_requests_total{{{selector}}}[{RATE}]))", "{{handler}}"
            ),
        ),
        graph(
            "Share of requests answered 5xx",
            "percentunit",
            query(
                f'sum(rate(http_requests_total{{{selector},status="5xx"}}[{RATE}]))'
                f" / sum(rate(http_requests_total{{{selector}}}[{RATE}]))",
                "5xx",
            ),
        ),
        graph(
            "Latency (p50, p99)",
            "s",
            *(
                query(
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(http_request_duration_seconds_bucket{{{selector}}}[{RATE}])))",
                    f"p{round(q * 100)}",
                )
                for q in (0.5, 0.99)
            ),
        ),
        graph(
            "p99 latency by route",
            "s",
            query(
                "histogram_quantile(0.99, sum by (handler, le) "
                f"(rate(http_request_duration_seconds_bucket{{{selector}}}[{RATE}])))",
                "{{handler}}",
            ),
        ),
    ]


def pages(job: str) -> list[timeseries.Panel]:
    """A Streamlit app's page runs (every view and widget change), errors and duration."""
    selector = f'job="{job}"'
    return [
        graph(
            "Page runs per second, by page and outcome",
            "ops",
            query(
                f"sum by (page, outcome) (rate(streamlit_page_runs_total{{{selector}}}[{RATE}]))",
                "{{page}} {{outcome}}",
            ),
        ),
        graph(
            "Page run time p99, by page",
            "s",
            query(
                "histogram_quantile(0.99, sum by (page, le) "
                f"(rate(streamlit_page_run_duration_seconds_bucket{{{selector}}}[{RATE}])))",
                "{{page}}",
            ),
        ),
    ]


def jobs(pattern: str) -> list:
    """Batch jobs' runs, as pushed to the Pushgateway."""
    selector = f'job=~"{pattern}"'
    return [
        graph(
            "Last run: 1 succeeded, 0 failed",
            "none",
            query(f"job_success{{{selector}}}", "{{job}}"),
        ),
        graph(
            "Time since the last success",
            "s",
            query(f"time() - job_last_success_timestamp_seconds{{{selector}}}", "{{job}}"),
        ),
        graph(
            "Last run's duration",
            "s",
            query(f"job_duration_seconds{{{selector}}}", "{{job}}"),
        ),
        graph("Rows or items handled", "short", query(f"job_items{{{selector}}}", "{{job}}")),
    ]


def served(model: str) -> list[stat.Panel]:
    return [
        figure(
            f"{model}: version served",
            "none",
            query(f'max(model_served_version{{model="{model}"}})'),
        ),
        figure(
            f"{model}: champion's age",
            "s",
            query(f'time() - max(model_served_registered_timestamp_seconds{{model="{model}"}})'),
        ),
    ]


def forecasting() -> dashboard.Dashboard:
    built = (
        board("mlsys-forecasting", "Forecasting", ["forecasting"])
        .with_row(dashboard.Row("Forecasts"))
        .with_panel(
            figure(
                "The latest forecast week ends",
                "dateTimeAsIso",
                query("max(forecast_week_end_timestamp_seconds) * 1000"),
            )
        )
        .with_panel(figure("Forecasts written", "short", query('job_items{job="ml-predict"}')))
        .with_panel(
            figure(
                "Sales rows registered",
                "short",
                query('job_items{job="data-registration-register"}'),
            )
        )
        .with_row(dashboard.Row("Drift: the champion's inputs and realised error"))
        .with_panel(
            figure(
                "Drift: 1 calls for retraining",
                "none",
                query('drift_detected{job="monitoring-forecaster-drift"}'),
            )
        )
        .with_panel(
            figure(
                "Share of the monitored columns that drifted",
                "percentunit",
                query('drift_share{job="monitoring-forecaster-drift"}'),
            )
        )
        .with_row(
            dashboard.Row("Jobs: registration, validation, training, the gate, predict, drift")
        )
    )
    for panel in jobs("ml-.*|data-registration-.*|monitoring-forecaster-.*"):
        built = built.with_panel(panel)
    built = built.with_row(dashboard.Row("The BI"))
    for panel in pages("bi"):
        built = built.with_panel(panel)
    return built


def aianimals_api() -> dashboard.Dashboard:
    built = board("mlsys-aianimals-api", "AIAnimals: API and search", ["aianimals"])
    built = built.with_row(dashboard.Row("The API"))
    for panel in requests("api"):
        built = built.with_panel(panel)
    built = (
        built.with_row(dashboard.Row("Search"))
        .with_panel(
            graph(
                "Search cache",
                "reqps",
                query(f"sum by (result) (rate(search_cache_requests_total[{RATE}]))", "{{result}}"),
            )
        )
        .with_panel(
            graph(
                "learn_to_rank: reranked or fallen back, and why",
                "reqps",
                query(
                    f"sum by (outcome, reason) (rate(search_learn_to_rank_total[{RATE}]))",
                    "{{outcome}} {{reason}}",
                ),
            )
        )
    )
    for model in (RANKER_MODEL_NAME, SIMILAR_WORDS_MODEL_NAME, IMAGE_EMBEDDING_MODEL_NAME):
        built = built.with_panel(served(model)[0]).with_panel(served(model)[1])
    return (
        built.with_row(dashboard.Row("Drift: the results searches showed"))
        .with_panel(
            figure(
                "Ranker drift: 1 calls for retraining",
                "none",
                query('drift_detected{job="monitoring-ranker-drift"}'),
            )
        )
        .with_panel(
            figure(
                "Share of the ranker's features that drifted",
                "percentunit",
                query('drift_share{job="monitoring-ranker-drift"}'),
            )
        )
    )


def messages_and_jobs() -> dashboard.Dashboard:
    built = (
        board("mlsys-messages-jobs", "Messages and jobs", ["aianimals", "forecasting"])
        .with_row(dashboard.Row("Outbox and relay"))
        .with_panel(
            graph(
                "Outbox: messages waiting, and the oldest's age",
                "short",
                query("max(outbox_waiting_messages)", "waiting"),
                query("max(outbox_oldest_waiting_seconds)", "oldest (s)"),
            )
        )
        .with_panel(
            graph(
                "Relayed and parked per second",
                "ops",
                query(f"sum(rate(outbox_relayed_total[{RATE}]))", "relayed"),
                query(f"sum(rate(outbox_parked_total[{RATE}]))", "parked"),
            )
        )
        .with_row(dashboard.Row("Consumers, by queue"))
        .with_panel(
            graph(
                "Handled per second",
                "ops",
                query(
                    f"sum by (queue) (rate(consumer_messages_handled_total[{RATE}]))", "{{queue}}"
                ),
            )
        )
        .with_panel(
            graph(
                "Failed, retried and dead-lettered per second",
                "ops",
                *(
                    query(
                        f"sum by (queue) (rate(consumer_messages_{what}_total[{RATE}]))",
                        f"{{{{queue}}}} {what}",
                    )
                    for what in ("failed", "retried", "dead_lettered")
                ),
            )
        )
        .with_panel(
            graph(
                "Waiting in the queue",
                "short",
                query("max by (queue) (consumer_queue_messages)", "{{queue}}"),
            )
        )
        .with_panel(
            graph(
                "Dead letters held",
                "short",
                query("max by (queue) (consumer_dead_letters)", "{{queue}}"),
            )
        )
        .with_panel(
            graph(
                "Handler p99",
                "s",
                query(
                    "histogram_quantile(0.99, sum by (queue, le) "
                    f"(rate(consumer_handler_duration_seconds_bucket[{RATE}])))",
                    "{{queue}}",
                ),
            )
        )
        .with_row(dashboard.Row("Every batch job"))
    )
    for panel in jobs(".+"):
        built = built.with_panel(panel)
    return built


def moderation() -> dashboard.Dashboard:
    built = (
        board("mlsys-moderation", "Moderation", ["aianimals", "moderation"])
        .with_row(dashboard.Row("Posts and verdicts"))
        .with_panel(
            graph(
                "Posts waiting for a verdict, and the oldest's age",
                "short",
                query("max(moderation_waiting_posts)", "waiting"),
                query("max(moderation_oldest_waiting_seconds)", "oldest (s)"),
            )
        )
        .with_panel(
            graph(
                "Photos judged per second, by outcome",
                "ops",
                query(
                    f"sum by (outcome) (rate(violation_predictions_total[{RATE}]))", "{{outcome}}"
                ),
                query(
                    f"sum by (reason) (rate(violation_refused_photos_total[{RATE}]))",
                    "refused: {{reason}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Share of photos judged a violation",
                "percentunit",
                query(
                    f'sum(rate(violation_predictions_total{{outcome="violation"}}[{RATE}]))'
                    f" / sum(rate(violation_predictions_total[{RATE}]))",
                    "violations",
                ),
            )
        )
        .with_panel(
            graph(
                "Judging time p99 (a request's photos)",
                "s",
                query(
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(violation_predict_duration_seconds_bucket[{RATE}])))",
                    "p99",
                ),
            )
        )
        .with_panel(served(CLASSIFIER_MODEL_NAME)[0])
        .with_panel(served(CLASSIFIER_MODEL_NAME)[1])
        .with_row(dashboard.Row("Drift: the posts the champion judged"))
        .with_panel(
            figure(
                "Drift: 1 calls for retraining",
                "none",
                query('drift_detected{job="monitoring-classifier-drift"}'),
            )
        )
        .with_panel(
            figure(
                "Estimated change in the share of posts without an animal",
                "percentunit",
                query('no_animal_share_change{job="monitoring-classifier-drift"}'),
            )
        )
        .with_row(dashboard.Row("The classifier server"))
    )
    for panel in requests("violation-classifier"):
        built = built.with_panel(panel)
    built = built.with_row(dashboard.Row("The review portal"))
    for panel in pages("review-portal"):
        built = built.with_panel(panel)
    return built


def experiments() -> dashboard.Dashboard:
    built = (
        board("mlsys-experiments", "Experiments: the A/B test proxy", ["aianimals", "experiments"])
        .with_row(dashboard.Row("Per variant"))
        .with_panel(
            graph(
                "Searches per second, by variant and status",
                "reqps",
                query(
                    f"sum by (variant, status) (rate(ab_requests_total[{RATE}]))",
                    "{{variant}} {{status}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Search p99 through the proxy, by variant",
                "s",
                query(
                    "histogram_quantile(0.99, sum by (variant, le) "
                    f"(rate(ab_request_duration_seconds_bucket[{RATE}])))",
                    "{{variant}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Access logs labelled per second, by variant",
                "ops",
                query(f"sum by (variant) (rate(ab_access_logs_total[{RATE}]))", "{{variant}}"),
            )
        )
        .with_row(dashboard.Row("The proxy"))
    )
    for panel in requests("ab-test-proxy"):
        built = built.with_panel(panel)
    return built


DASHBOARDS = (forecasting, aianimals_api, messages_and_jobs, moderation, experiments)


def rendered() -> dict[Path, str]:
    """Each dashboard's JSON, by the file it is provisioned from."""
    files = {}
    for define in DASHBOARDS:
        built = define().build()
        for number, panel in enumerate(built.panels or [], start=1):
            panel.id_val = number  # unique within the dashboard, as Grafana wants
        files[OUTPUT / f"{built.uid}.json"] = (
            json.dumps(built, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
        )
    return files


if __name__ == "__main__":
    OUTPUT.mkdir(exist_ok=True)
    for path, text in rendered().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(HERE.parent.parent)}", file=sys.stdout)
