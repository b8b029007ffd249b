"""An experiment end to end on the small seeded data: the API with a champion ranker, the
proxy in front of it (sticky by user: ranker vs likes), simulated users through the
proxy, then the report from the access logs the proxy labelled."""

import json
import shutil

import pytest
import yaml
from sqlalchemy import func, select

from mlsys.ab_test_proxy.config import Experiment
from mlsys.ab_test_proxy.proxy import create_app
from tests.helpers.cli import local_env, run_cli
from tests.helpers.http import ApiServer, serving_api

pytestmark = pytest.mark.slow
SEARCHES = 40


def test_simulated_users_through_the_proxy_make_a_report(
    ranked_home, aianimals_generated, local_home, tmp_path, monkeypatch
):
    shutil.copytree(ranked_home, local_home)
    monkeypatch.setenv("AUTH_TRUSTED_PROXIES", "127.0.0.1")  # the labels are the proxy's word
    with serving_api() as (_, api):
        experiment = {
            "name": "small", "mode": "user", "upstream": api.url,
            "variants": [{"name": "ranker", "weight": 1, "sort_by": "learn_to_rank"},
                         {"name": "likes", "weight": 1, "sort_by": "like"}],
        }  # fmt: skip
        with ApiServer(create_app(Experiment.model_validate(experiment))) as proxy:
            played = run_cli(
                "mlsys.search", "simulate", "--api", proxy.url, "--searches", str(SEARCHES),
                "--users", "30", "--concurrency", "4", "--hidden-quality",
                str(aianimals_generated / "hidden_quality.csv"), env=local_env(local_home),
            ).stdout  # fmt: skip
    assert f"searches: {SEARCHES}," in played and "failures: 0" in played
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump(experiment))
    run_cli("mlsys.ab_test_proxy", "report", "--config", str(config),
            "--output", str(tmp_path / "report.json"), env=local_env(local_home))  # fmt: skip
    report = json.loads((tmp_path / "report.json").read_text())
    searches = {name: v["searches"] for name, v in report["variants"].items()}
    assert sum(searches.values()) == SEARCHES and min(searches.values()) > 0
    assert set(report["comparisons"]["ranker_vs_likes"]) == {
        "ctr_difference", "ctr_p", "ndcg@10_difference", "ndcg@10_p"}  # fmt: skip
    assert 0 <= report["sample_ratio"]["p"] <= 1

    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.tables import AccessLog

    with get_engine().connect() as connection:
        labelled = connection.execute(
            select(AccessLog.model_name, func.count(func.distinct(AccessLog.search_id)))
            .where(AccessLog.model_name.like("small:%"))
            .group_by(AccessLog.model_name)
        ).all()
    assert dict(labelled) == {f"small:{name}": n for name, n in searches.items()}
