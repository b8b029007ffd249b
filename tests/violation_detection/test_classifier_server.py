"""The classifier's server: one photo or a batch judged by the champion with the threshold
registered with it, bad photos refused with a 4xx that says why, 503 until a model is
loaded, and the next champion served once the alias moves."""

import io

import httpx
import pytest
from PIL import Image

from tests.helpers.http import ApiServer
from tests.helpers.paths import ROOT

PHOTO = ROOT / "dataset/images" / "animal/animals__2_dead_frogs_lumen_desig_01.png"


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A local MLflow store of this test's own; register(threshold) adds a version of a
    tiny (untrained) classifier and makes it the champion."""
    monkeypatch.setenv("MLSYS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLSYS_PROFILE", "local")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from tests.helpers.moderation import register_tiny_classifier

    def register(threshold: float) -> int:
        return register_tiny_classifier(threshold)[0]

    return register


def png(size=(128, 128), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_photos_are_judged_with_the_champions_threshold_and_bad_ones_refused(registry):
    from mlsys.violation_detection.serve import (
        MAX_BATCH,
        MAX_PHOTO_BYTES,
        champion_classifier,
        create_app,
    )

    champion = champion_classifier()
    with (
        ApiServer(create_app(champion)) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        assert client.post("/v1/predict", files={"photos": ("a.png", png())}).status_code == 503
        assert client.get("/health/ready").status_code == 503
        assert client.get("/health").status_code == 200

        registry(threshold=0.0)  # every photo is a violation at 0
        champion.refresh()
        assert client.get("/health/ready").json()["model"] == "aianimals_no_animal_violation/1"
        one = client.post("/v1/predict", files={"photos": ("frog.png", PHOTO.read_bytes())})
        assert one.status_code == 200, one.text
        body = one.json()
        assert body["model"] == "aianimals_no_animal_violation/1" and body["threshold"] == 0.0
        [prediction] = body["predictions"]
        assert 0.0 <= prediction["no_animal"] <= 1.0 and prediction["violation"] is True
        # The SavedModel served scores as the Keras model does: the augmentation layers
        # stay off (model.export() left them on and every photo was flipped and zoomed).
        from mlsys.aianimals.photos import decoded
        from mlsys.violation_detection.tracking import load_version
        from mlsys.violation_detection.train import no_animal_scores

        keras_model, _ = load_version(1)
        expected = no_animal_scores(keras_model, decoded(PHOTO)[None])[0]
        assert prediction["no_animal"] == pytest.approx(float(expected), abs=1e-6)
        # A batch, in order, any size of photo resized to what the model takes.
        batch = [("photos", (f"{i}.png", png(size=(64 + i, 200)))) for i in range(3)]
        assert len(client.post("/v1/predict", files=batch).json()["predictions"]) == 3

        refused = {
            "not an image": ([("photos", ("x.png", b"GIF89a not really"))], 415),
            "too small": ([("photos", ("tiny.png", png(size=(16, 16))))], 422),
            "too large": ([("photos", ("big.png", b"\x89PNG" + b"0" * MAX_PHOTO_BYTES))], 413),
            "too many": ([("photos", (f"{i}.png", png())) for i in range(MAX_BATCH + 1)], 413),
        }
        for why, (files, expected) in refused.items():
            answer = client.post("/v1/predict", files=files)
            assert answer.status_code == expected, why
            assert answer.json()["detail"], why
        assert (
            "tiny.png: 16x16 pixels"
            in client.post("/v1/predict", files=refused["too small"][0]).json()["detail"]
        )
        metrics = client.get("/metrics").text
        assert 'violation_refused_photos_total{reason="not_an_image"}' in metrics
        assert 'violation_predictions_total{outcome="violation"}' in metrics


def test_the_next_champion_is_served_once_the_alias_moves(registry):
    from mlsys.violation_detection.serve import champion_classifier

    champion = champion_classifier()
    registry(threshold=0.2)
    champion.refresh()
    assert (champion.loaded.version, champion.loaded.threshold) == (1, 0.2)
    first = champion.loaded
    champion.refresh()
    assert champion.loaded is first  # the same version is not loaded again
    registry(threshold=0.7)
    champion.refresh()
    assert (champion.loaded.version, champion.loaded.threshold) == (2, 0.7)
