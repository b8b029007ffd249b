"""Similar words as an MLflow pyfunc model: the table is the model's artifact, and the
model answers phrases with their similar words (what the API adds to a search). Its own
module because it imports MLflow: only the job that logs it and the loader import it."""

import mlflow.pyfunc
from mlflow.pyfunc import PythonModel

from mlsys.aianimals.search import SimilarWord
from mlsys.aianimals.similar_words import SIMILAR_WORDS_MODEL_NAME, SimilarWords
from mlsys.common.tracking import model_uri

TABLE_ARTIFACT = "similar_words"  # the artifact key, and the file's stem in the model


class SimilarWordsModel(PythonModel):
    def load_context(self, context) -> None:
        with open(context.artifacts[TABLE_ARTIFACT], encoding="utf-8") as file:
            self.words = SimilarWords.from_json(file.read())

    def predict(self, context, model_input: list[str], params=None) -> list[SimilarWord]:
        """The similar words of the phrases."""
        return self.words.expand(list(model_input))


def load_similar_words(version: int | str) -> SimilarWords:
    """The table of a registered version (a number, or `CHAMPION_VERSION`)."""
    uri = model_uri(SIMILAR_WORDS_MODEL_NAME, version)
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().words
