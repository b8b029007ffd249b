"""The image embedding's job, run for real on a seeded sample of the shipped photos with a
tiny model and two epochs: its report's figures and their ranges."""

import json

import pytest

from tests.helpers.cli import local_env, run_cli


@pytest.mark.slow
def test_build_image_index_reports_recall_and_precision_beside_chance(tmp_path, monkeypatch):
    result = run_cli(
        "mlsys.search", "build-image-index", "--limit", "200", "--epochs", "2",
        "--resolution", "24", "--width", "4", "--output", str(tmp_path / "report.json"),
        env=local_env(tmp_path / "home") | {"TMPDIR": str(tmp_path)},
    )  # fmt: skip
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["photos"]["indexed"] == 200
    assert report["photos"]["test"] == 30  # the classifier's split: 15 % of the sample
    assert report["recall@10"] >= 0.95  # 200 vectors: HNSW is all but exact
    for figure in ("label", "subcategory"):
        assert 0 <= report[f"precision@10_{figure}"] <= 1
        assert 0 < report["chance"][figure] < 1
    # Most of the sample is no animal: a random neighbour shares the label most often.
    assert report["chance"]["label"] > 0.6 > report["chance"]["subcategory"]
    assert "recall@10" in result.stdout and "chance" in result.stdout

    # Exported for serving beside the Keras model: the SavedModel gives the same vectors.
    import numpy as np
    import tensorflow as tf

    import mlflow
    from mlsys.aianimals.image_index import IMAGE_EMBEDDING_MODEL_NAME
    from mlsys.aianimals.photos import IMAGE_SIZE
    from mlsys.common.tracking import configure_tracking
    from mlsys.search.keras_training import SAVED_MODEL
    from mlsys.search.tracking import load_embedding_model

    monkeypatch.setenv("MLSYS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLSYS_PROFILE", "local")
    configure_tracking()
    version = mlflow.MlflowClient().get_model_version(IMAGE_EMBEDDING_MODEL_NAME, "1")
    exported = mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path=SAVED_MODEL, dst_path=str(tmp_path / "export")
    )
    photos = np.random.default_rng(0).integers(
        0, 256, (3, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8
    )
    saved = tf.saved_model.load(exported)  # kept: its functions need its variables alive
    served = saved.serve(tf.constant(photos)).numpy()
    keras_model = load_embedding_model(1)
    np.testing.assert_allclose(served, keras_model.predict(photos, verbose=0), atol=1e-5)
    assert np.allclose(np.linalg.norm(served, axis=1), 1, atol=1e-4)
