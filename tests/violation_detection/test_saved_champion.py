"""Issue 34, item 3: a champion saved by today's code is loaded and scored as it was by
the gate and by the server after the code's constants change, because the fitted pipeline
holds every setting it was fitted with."""

import numpy as np

from mlsys.aianimals.photos import load_photos
from mlsys.common.tracking import CHAMPION_VERSION
from tests.helpers.moderation import IMAGES, register_tiny_classifier


def test_an_old_champion_scores_as_it_did_after_the_codes_constants_change(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSYS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLSYS_PROFILE", "local")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import mlflow
    from mlsys.violation_detection import features, train
    from mlsys.violation_detection.evaluate import roc_auc
    from mlsys.violation_detection.serve import champion_classifier
    from mlsys.violation_detection.tracking import gate, load_version, log_model

    photos = load_photos(IMAGES, limit=50, seed=1)
    register_tiny_classifier(0.5)
    saved, _ = load_version(CHAMPION_VERSION)
    before = train.no_animal_scores(saved, photos.images)
    blocks = saved[0]._blocks(photos.images[:4])

    # Today's code changes: SIFT's clipping and blank-patch level, the drawing's ink, and
    # the encoder's defaults (five times the Gaussians, as a change once did).
    monkeypatch.setattr(features.dense_sift, "__defaults__", (4, 4, 0.3, 0.05))
    monkeypatch.setattr(features.drawing_crop, "__defaults__", (0.8, 2.0))
    defaults = list(train.FisherVectorEncoder.__init__.__defaults__)
    defaults[1] *= 5
    monkeypatch.setattr(train.FisherVectorEncoder.__init__, "__defaults__", tuple(defaults))
    assert not np.allclose(features.dense_sift(blocks, 8), saved[0]._sift(blocks, 8))
    assert train.FisherVectorEncoder().components == 5 * 128

    # The gate re-scores the champion through its own artifact.
    with mlflow.start_run():
        candidate = int(log_model(saved).registered_model_version)
    promoted, champion_auc = gate(candidate, 0.0, photos.images, photos.labels)
    assert not promoted and champion_auc == roc_auc(photos.labels, before)
    # And the server judges with it as it did.
    watch = champion_classifier()
    watch.refresh()
    np.testing.assert_array_equal(watch.loaded.infer(photos.images), before)
