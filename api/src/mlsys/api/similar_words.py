"""Similar words in the API: the champion aianimals_similar_words table, loaded in the
background and reloaded when the alias moves, added to every search's phrases (weighing
less than the words typed). Cached search answers are dropped when another version is
served: they were computed with the one before."""

from collections.abc import Callable
from dataclasses import dataclass

from mlsys.aianimals.search import SearchQuery
from mlsys.aianimals.similar_words import SIMILAR_WORDS_MODEL_NAME, SimilarWords
from mlsys.common.tracking import ChampionWatch

REFRESH_SECONDS = 30.0  # how soon a moved champion alias is served


@dataclass(frozen=True)
class LoadedWords:
    version: int
    words: SimilarWords


def _load(version: int) -> LoadedWords:
    from mlsys.aianimals.similar_words_model import load_similar_words  # imports MLflow

    return LoadedWords(version, load_similar_words(version))


def champion_similar_words(
    on_change: Callable[[], None] | None = None, refresh_seconds: float = REFRESH_SECONDS
) -> ChampionWatch[LoadedWords]:
    """The champion of SIMILAR_WORDS_MODEL_NAME, as this replica applies it."""
    return ChampionWatch(SIMILAR_WORDS_MODEL_NAME, _load, refresh_seconds,
                         what="similar-words table", on_change=on_change)  # fmt: skip


def expanded(query: SearchQuery, watch: ChampionWatch[LoadedWords]) -> SearchQuery:
    """The query with the served similar words of its phrases (as it is, while none is)."""
    loaded = watch.loaded
    if loaded is None or not query.phrases:
        return query
    return query.model_copy(update={"similar_words": loaded.words.expand(query.phrases)})
