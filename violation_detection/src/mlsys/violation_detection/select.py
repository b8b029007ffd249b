"""How the classifier's settings were chosen: cross-validation on the training photos
alone (validation only sets the threshold; the test sets are scored once, by `train`).

Each candidate is scored by its mean ROC AUC over stratified folds of the training
photos, a photo and its mirror image always in the same fold. The Fisher vectors' PCA
and mixtures are fitted once on all the training photos (labels unused, as in
`train`), so the folds compare what learns from the labels: the regression's penalty,
the mixture's size, and whether a second model beside it (the gradient-boosting
baseline, blended by `StackingClassifier` with its own inner folds) adds anything. A part
is kept only if it adds at least 0.01 ROC AUC (docs/moderation.md has the figures)."""

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier, StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from mlsys.violation_detection.baseline import histogram_features
from mlsys.violation_detection.evaluate import roc_auc
from mlsys.violation_detection.train import ClassifierParams, FisherVectorEncoder


def _fisher_part(columns: slice):
    return FunctionTransformer(lambda x: x[:, columns])


def candidates(width: int, c: float) -> dict:
    """The models compared, each on [Fisher vectors | histogram features] rows."""
    fisher = slice(0, width)
    histograms = slice(width, None)

    def regression(penalty):
        return make_pipeline(
            _fisher_part(fisher),
            LogisticRegression(C=penalty, class_weight="balanced", max_iter=2000),
        )

    baseline = make_pipeline(
        _fisher_part(histograms),
        HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.05, class_weight="balanced", random_state=0
        ),
    )
    models = {
        f"fisher vectors, C={penalty:g}": regression(penalty) for penalty in (c / 3, c, 3 * c)
    }
    models["fisher vectors + baseline, stacked"] = StackingClassifier(
        [("fisher", regression(c)), ("baseline", baseline)],
        LogisticRegression(class_weight="balanced"),
        cv=5,
    )
    return models


def cross_validate(
    images: np.ndarray, labels: np.ndarray, params: ClassifierParams, folds: int = 5,
    components: tuple[int, ...] = (64, 128),
) -> dict[str, float]:  # fmt: skip
    """Mean ROC AUC over the folds of each candidate, mirrors kept with their photo."""
    mirrored = np.concatenate([images, images[:, :, ::-1]])
    doubled = np.concatenate([labels, labels])
    histograms = histogram_features(mirrored)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=params.seed)
    scores: dict[str, float] = {}
    for count in components:
        encoder = FisherVectorEncoder(
            params.cells, count, params.dims, random_state=params.seed
        ).fit(mirrored)
        rows = np.hstack([encoder.transform(mirrored), histograms])
        width = rows.shape[1] - histograms.shape[1]
        for name, model in candidates(width, params.c).items():
            if count != params.components and "C=" not in name:
                continue  # the blend is compared at the chosen size only
            aucs = []
            for train, held in splitter.split(images, labels):
                both = np.concatenate([train, train + len(images)])
                fitted = clone(model).fit(rows[both], doubled[both])
                aucs.append(roc_auc(labels[held], fitted.predict_proba(rows[held])[:, 1]))
            scores[f"{name}, {count} Gaussians"] = float(np.mean(aucs))
    return scores
