"""Similar words: what the similar-words job learns and the API applies to query phrases.

A table from a word (its key, as `mlsys.aianimals.japanese.phrase_words` makes it) to the words
learned to mean the same, each with a similarity in (0, 1]. Applied to a query, every
word of a phrase that has similar words gets them as `SimilarWord`s weighing
EXPANSION_WEIGHT * similarity: less than the word typed, so a post that says the word
another way is found, and ranked below the posts that say it as typed. The table is
registered in MLflow per version (`mlsys.aianimals.similar_words_model`)."""

import json
import unicodedata
from dataclasses import dataclass

from mlsys.aianimals.japanese import phrase_words
from mlsys.aianimals.search import SimilarWord

SIMILAR_WORDS_MODEL_NAME = "aianimals_similar_words"
SIMILAR_WORDS_EXPERIMENT = "aianimals_similar_words"
# A similar word of similarity 1 counts half the word typed.
EXPANSION_WEIGHT = 0.5


@dataclass(frozen=True)
class SimilarWords:
    """word -> [(similar word, similarity)], the most similar first."""

    table: dict[str, list[tuple[str, float]]]

    def expand(self, phrases: list[str]) -> list[SimilarWord]:
        """The similar words of every word of the phrases."""
        found = []
        for phrase in phrases:
            text = unicodedata.normalize("NFKC", phrase)
            for surface, key in phrase_words(phrase):
                for similar, similarity in self.table.get(key, ()):
                    found.append(
                        SimilarWord(
                            phrase=phrase,
                            word=key,
                            similar=similar,
                            text=text.replace(surface, similar, 1),
                            weight=EXPANSION_WEIGHT * similarity,
                        )
                    )
        return found

    def to_json(self) -> str:
        return json.dumps(self.table, ensure_ascii=False, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SimilarWords":
        table = json.loads(text)
        return cls({w: [(s, float(v)) for s, v in similar] for w, similar in table.items()})
