"""`python -m mlsys.search similar-words` on a seeded dataset with nicknames: what it
learns, what it reports (held-out synonym queries, the latest logged searches), the gate,
and the API applying the champion to searches."""

import json
import shutil
from pathlib import Path

import pytest

from mlsys.aianimals.japanese import phrase_words
from mlsys.aianimals.similar_words import SIMILAR_WORDS_MODEL_NAME
from mlsys.aianimals.users import BREED_NICKNAMES, CATEGORY_NICKNAMES, CATEGORY_WORDS
from mlsys.common.tracking import CHAMPION_VERSION
from tests.helpers.aianimals import give_a_post_an_untokenizable_description, search, wait_until
from tests.helpers.cli import local_env, run_cli
from tests.helpers.http import login, serving_api

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def words_home(tmp_path_factory):
    """A home loaded with enough logged searches to learn nicknames from, indexed, with
    the first similar-words version trained (and its report)."""
    generated = tmp_path_factory.mktemp("words-generated")
    home = tmp_path_factory.mktemp("words") / "mlsys-home"
    env = local_env(home)
    run_cli("mlsys.batch", "generate", "--output", str(generated), "--posts", "1500",
            "--searches", "5000", "--seed", "7")  # fmt: skip
    run_cli("mlsys.batch", "initial-load", "--generated", str(generated), env=env)
    run_cli("mlsys.batch", "search-index", "--idle-seconds", "0.5", env=env)
    report = home / "similar_words.json"
    queries = generated / "synonym_queries.json"
    first = run_cli("mlsys.search", "similar-words", "--output", str(report),
                    "--synonym-queries", str(queries), env=env)  # fmt: skip
    return home, generated, json.loads(report.read_text()), first.stdout


def key(word: str) -> str:
    [(_, found)] = phrase_words(word)
    return found


def true_pairs() -> set[tuple[str, str]]:
    """Every (word, nickname) both ways, as keys: what the generator's users write."""
    from mlsys.batch.dataset import read_master_data

    breeds = read_master_data(Path("dataset/aianimals")).subcategories
    names = breeds.set_index("name_en")["name_ja"]
    groups = [[names[breed], nickname] for breed, nickname in BREED_NICKNAMES.items()]
    groups += [[CATEGORY_WORDS[c][0], *nicknames] for c, nicknames in CATEGORY_NICKNAMES.items()]
    return {(key(a), key(b)) for group in groups for a in group for b in group if key(a) != key(b)}


def test_it_learns_the_nicknames_and_nothing_else(words_home):
    _, _, report, stdout = words_home
    learned = {(word, similar) for word, found in report["similar_words"].items()
               for similar, _ in found}  # fmt: skip
    assert learned <= true_pairs()
    assert len(learned) >= 8  # most of the 14 pairs, from 1,500 posts and 5,000 searches
    assert ("サイアミーズ", "シャム") in learned and ("ニャンコ", "ネコ") in learned
    similarities = [s for found in report["similar_words"].values() for _, s in found]
    assert all(0.15 <= s <= 1 for s in similarities)
    assert "version 1: champion" in stdout


def test_recall_rises_with_similar_words_and_precision_holds(words_home):
    _, _, report, stdout = words_home
    held = report["synonym_queries"]
    assert held["queries"] == 2 * (len(CATEGORY_NICKNAMES) + len(BREED_NICKNAMES)) == 14
    assert held["expanded"]["recall"] > held["typed"]["recall"] + 0.2
    assert held["expanded"]["precision@10"] >= held["typed"]["precision@10"] - 0.05
    siamese = held["per_query"]["サイアミーズ"]
    assert siamese["typed"]["found"] < siamese["expanded"]["found"] <= siamese["relevant"]
    logged = report["logged"]
    assert logged["expanded"]["searches"] == logged["typed"]["searches"] > 100
    assert logged["expanded"]["recall"] > logged["typed"]["recall"]
    assert "held-out synonym queries: recall" in stdout


def test_a_post_the_tokenizer_refuses_is_skipped_and_counted(words_home, local_home):
    """Issue 32, item 4: one such description made every weekly run exit 1."""
    home, generated, first, _ = words_home
    shutil.copytree(home, local_home)
    give_a_post_an_untokenizable_description()
    output = local_home / "again.json"
    run_cli("mlsys.search", "similar-words", "--output", str(output), "--no-promote",
            "--synonym-queries", str(generated / "synonym_queries.json"),
            env=local_env(local_home))  # fmt: skip
    learned = json.loads(output.read_text())["learned"]
    assert learned["untokenizable_posts"] == 1 and first["learned"]["untokenizable_posts"] == 0
    assert learned["posts"] == first["learned"]["posts"]


def test_the_gate_keeps_the_champion_when_the_new_version_is_no_better(words_home, local_home):
    home, generated, report, _ = words_home
    shutil.copytree(home, local_home)
    again = run_cli("mlsys.search", "similar-words", "--synonym-queries",
                    str(generated / "synonym_queries.json"), env=local_env(local_home))  # fmt: skip
    assert "registered aianimals_similar_words version 2" in again.stdout
    assert "version 2: not promoted" in again.stdout  # the same table: not better

    import mlflow
    from mlsys.common.tracking import CHAMPION, configure_tracking
    from mlsys.search.tracking import WORDS_GATE_METRIC

    configure_tracking()
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(SIMILAR_WORDS_MODEL_NAME, CHAMPION)
    assert str(champion.version) == "1"
    metrics = client.get_run(champion.run_id).data.metrics
    assert metrics[WORDS_GATE_METRIC] == report["logged"]["expanded"]["recall"]
    assert (
        metrics["synonym_queries.expanded.recall"]
        == report["synonym_queries"]["expanded"]["recall"]
    )
    from mlsys.aianimals.similar_words_model import load_similar_words

    assert load_similar_words(CHAMPION_VERSION).table == {
        w: [tuple(s) for s in found] for w, found in report["similar_words"].items()
    }


def test_the_api_finds_a_nickname_s_posts_below_the_typed_word(words_home, local_home):
    """サイアミーズ (learned: シャム) finds the Siamese posts that say シャム, after its own."""
    home, *_ = words_home
    shutil.copytree(home, local_home)
    with serving_api() as (api, _):
        token = login(api)

        def found():
            return search(api, token, {"phrases": ["サイアミーズ"]}, limit=100)["results"]

        def says_it(result) -> bool:
            return "サイアミーズ" in result["description"]

        # The champion is loaded in the background (answers cached before it are dropped
        # then: ChampionWatch.on_change, tests/common/test_tracking.py).
        wait_until(lambda: not all(map(says_it, found())))
        results = found()
        says = [says_it(r) for r in results]
        typed = says.count(True)
        assert typed > 0 and says == [True] * typed + [False] * (len(says) - typed)
        assert all("シャム" in r["description"] for r in results[typed:])  # the similar word's
        assert all(r["animal_subcategory_name_en"] == "siamese" for r in results)
        scores = [r["score"] for r in results]
        assert max(scores[typed:]) < min(scores[:typed])
