"""`python -m mlsys.search train-ranker` on the small seeded dataset: both tables written
and logged, the ranker registered, and the gate deciding on the same held-out searches."""

import json

import pytest

from mlsys.aianimals.ranking import FEATURE_SET_VERSION, RANKER_MODEL_NAME
from tests.helpers.aianimals import give_a_post_an_untokenizable_description
from tests.helpers.cli import local_env, run_cli

pytestmark = pytest.mark.slow
NAMES = {"ranker", "regressor", "likes", "text_score", "recency"}


def train_ranker(home, generated, output, *options):
    return run_cli(
        "mlsys.search", "train-ranker", "--output", str(output),
        "--hidden-quality", str(generated / "hidden_quality.csv"), *options,
        env=local_env(home),
    )  # fmt: skip


def test_train_ranker_reports_both_tables_and_gates_the_version(
    aianimals_home, aianimals_generated, tmp_path, monkeypatch
):
    first = train_ranker(aianimals_home, aianimals_generated, tmp_path / "first.json",
                         "--version-file", str(tmp_path / "version"))  # fmt: skip
    report = json.loads((tmp_path / "first.json").read_text())
    assert set(report) == {"hidden_quality", "logged_clicks", "gap_closed", "chosen",
                           "untokenizable_posts"}  # fmt: skip
    assert report["untokenizable_posts"] == 0
    served = report["chosen"]
    assert served in ("ranker", "regressor")
    for table in ("hidden_quality", "logged_clicks"):
        assert set(report[table]) == NAMES
        for values in report[table].values():
            assert set(values) == {"ndcg@10", "mrr"}
            assert all(0 <= v <= 1 for v in values.values())
    likes = report["hidden_quality"]["likes"]["ndcg@10"]
    ranker = report["hidden_quality"][served]["ndcg@10"]
    assert report["gap_closed"] == pytest.approx((ranker - likes) / (1 - likes), abs=1e-3)
    assert "likes" in first.stdout and "gap to the ideal order" in first.stdout
    assert (tmp_path / "version").read_text() == "1"

    import mlflow
    from mlsys.common.tracking import CHAMPION, configure_mlflow

    monkeypatch.setenv("MLSYS_HOME", str(aianimals_home))
    monkeypatch.setenv("MLSYS_PROFILE", "local")
    configure_mlflow("aianimals_search_ranking")
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(RANKER_MODEL_NAME, CHAMPION)
    assert str(champion.version) == "1"  # the first version has nobody to beat
    run = client.get_run(champion.run_id)
    assert run.data.params["feature_set_version"] == str(FEATURE_SET_VERSION)
    assert len(run.data.params["data_fingerprint"]) == 16
    assert run.data.metrics["hidden_quality.likes.ndcg_at_10"] == likes
    assert run.data.params["served"] == served
    gate = "logged_clicks.served.ndcg_at_10"
    assert run.data.metrics[gate] == report["logged_clicks"][served]["ndcg@10"]

    # A weaker candidate (one tree) is registered but does not take the alias unless it
    # beats the champion scored on the same held-out searches.
    train_ranker(aianimals_home, aianimals_generated, tmp_path / "second.json",
                 "--num-boost-round", "1", "--seed", "3")  # fmt: skip
    second = json.loads((tmp_path / "second.json").read_text())
    champion_now = client.get_model_version_by_alias(RANKER_MODEL_NAME, CHAMPION)
    candidate = second["logged_clicks"][second["chosen"]]["ndcg@10"]
    champion_then = report["logged_clicks"][served]["ndcg@10"]  # same data, same searches
    assert str(champion_now.version) == ("2" if candidate > champion_then else "1")


def test_too_few_searches_is_a_clear_error(local_home):
    result = run_cli("mlsys.search", "train-ranker", env=local_env(local_home), check=False)
    assert result.returncode == 1 and "logged searches: at least 50 needed" in result.stderr


def test_a_post_the_tokenizer_refuses_is_skipped_and_counted(
    aianimals_home, aianimals_generated, tmp_path
):
    """Issue 32, item 4: one such description made every weekly run exit 1."""
    give_a_post_an_untokenizable_description()
    train_ranker(aianimals_home, aianimals_generated, tmp_path / "report.json", "--no-promote")
    assert json.loads((tmp_path / "report.json").read_text())["untokenizable_posts"] == 1
