"""Prometheus metrics: requests and their latency per route (the platform's HTTP metrics),
search cache results, learn_to_rank's outcomes, outbox lag, posts waiting for a moderation
verdict."""

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mlsys.aianimals.database import get_engine
from mlsys.aianimals.indexing import waiting_for_verdict
from mlsys.aianimals.messages import outbox_lag
from mlsys.common.metrics import HttpMetrics

HTTP = HttpMetrics()
SEARCH_CACHE = Counter(
    "search_cache_requests_total",
    "Searches by cache result: hit, coalesced (answered by an identical search in flight), "
    "miss (computed and stored) or bypass (not storable)",
    ["result"],
)

RANKING = Counter(
    "search_learn_to_rank_total",
    "learn_to_rank searches by outcome: reranked by the champion, or fallback to score "
    "order, with its reason: no_model (none registered, loading, or not loadable), "
    "features_unavailable (the post_activity database), prediction_failed (the model "
    "refused the features)",
    ["outcome", "reason"],
)


class WaitingCollector(Collector):
    """Measured at scrape time: messages waiting to be handed on, posts waiting for a
    moderation verdict, and the oldest's age of each (an alert's input: a classifier
    outage or a dead-lettered moderation message leaves posts waiting)."""

    def describe(self):
        # Without it, registering would call collect(): a database query at import.
        return self._families((0, 0.0), (0, 0.0))

    def collect(self):
        with get_engine().connect() as connection:
            return self._families(outbox_lag(connection), waiting_for_verdict(connection))

    @staticmethod
    def _families(
        outbox: tuple[int, float], moderation: tuple[int, float]
    ) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "outbox_waiting_messages", "Outbox messages not handed on", outbox[0]
            ),
            GaugeMetricFamily(
                "outbox_oldest_waiting_seconds",
                "Age of the oldest waiting outbox message",
                outbox[1],
            ),
            GaugeMetricFamily(
                "moderation_waiting_posts",
                "Active posts no classifier has judged yet",
                moderation[0],
            ),
            GaugeMetricFamily(
                "moderation_oldest_waiting_seconds",
                "Age of the oldest active post waiting for a verdict",
                moderation[1],
            ),
        ]


REGISTRY.register(WaitingCollector())
