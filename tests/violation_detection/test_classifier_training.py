"""The no-animal classifier's training: the split, the threshold, the crop and the Fisher
vectors against their definitions, and a small seeded run of the real command (a sample
of the photos, a small mixture) that logs to MLflow, registers the version with its
threshold and writes the report."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mlsys.aianimals.photos import load_photos, split
from mlsys.violation_detection.evaluate import at_threshold, threshold_for_precision
from tests.helpers.cli import local_env, run_cli
from tests.helpers.paths import ROOT

IMAGES = ROOT / "dataset/images"


def test_the_split_is_fixed_by_the_seed_stratified_and_disjoint():
    labels = np.array([1] * 820 + [0] * 180)
    first, again, other = split(labels, 0), split(labels, 0), split(labels, 1)
    for part in ("train", "validation", "test"):
        assert np.array_equal(getattr(first, part), getattr(again, part))
    assert not np.array_equal(first.test, other.test)
    parts = [first.train, first.validation, first.test]
    assert sum(len(p) for p in parts) == len(labels)
    assert len(np.unique(np.concatenate(parts))) == len(labels)  # no photo in two parts
    for part in parts:
        assert labels[part].mean() == pytest.approx(0.82, abs=0.01)
    assert len(first.test) == pytest.approx(150, abs=2)


def test_the_threshold_is_the_lowest_reaching_the_target_precision_with_the_confidence():
    labels = np.array([1, 1, 0, 1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    # At 0.6: 3 of 4 flagged are no-animal (0.75); at 0.8: 2 of 2 (1.0); at 0.4: 4 of 6.
    at = at_threshold(labels, scores, 0.6)
    assert (at.precision, at.recall) == (0.75, 0.75)
    # With no animal among n flagged photos, the bound of their share is 1 - 0.1 ** (1 / n):
    # at most 0.05 from n = 45 on (0.0499), not at 44 (0.0510).
    scores = np.linspace(1, 0, 56)
    for leading, expected in ((45, scores[44]), (44, None)):
        labels = np.array([1] * leading + [0] + [1] * (55 - leading))
        # The observed precision reaches 0.95 at every threshold (55 of 56 at the lowest).
        assert at_threshold(labels, scores, 0.0).precision > 0.98
        chosen = threshold_for_precision(labels, scores, 0.95, confidence=0.9)
        if expected is None:  # none reaches it: above every score, nothing flagged
            assert chosen > 1 and at_threshold(labels, scores, chosen).recall == 0
        else:
            assert chosen == expected
    # Less confidence, a lower threshold: with 50%, one animal among 55 flagged is allowed.
    assert threshold_for_precision(labels, scores, 0.95, confidence=0.5) == scores[-1]


def test_photos_are_read_from_the_manifest_and_bad_labels_are_refused(tmp_path):
    photos = load_photos(IMAGES, limit=40)
    assert photos.images.shape == (len(photos), 128, 128, 3) and photos.images.dtype == np.uint8
    assert 0.7 < photos.labels.mean() < 0.9  # the sample keeps the dataset's share
    (tmp_path / "manifest.csv").write_text("file,label,category,subcategory,source\nx.png,cat,,,\n")
    with pytest.raises(ValueError, match="unknown labels \\['cat'\\]"):
        load_photos(tmp_path)


def test_a_photo_filed_twice_is_one_photo_and_an_animal_if_any_file_says_so(tmp_path):
    from PIL import Image

    drawing = np.zeros((128, 128, 3), np.uint8)
    drawing[40:90, 30:100] = (200, 120, 40)
    for name in ("owl.png", "birds_owl.png", "unsorted_owl.png"):
        Image.fromarray(drawing).save(tmp_path / name)
    Image.fromarray(255 - drawing).save(tmp_path / "stapler.png")
    (tmp_path / "manifest.csv").write_text(
        "file,label,category,subcategory,source\n"
        "unsorted_owl.png,no_animal,unsorted,,\n"
        "owl.png,animal,animals,,\n"
        "birds_owl.png,animal,animals,birds,\n"
        "stapler.png,no_animal,office,,\n"
    )
    photos = load_photos(tmp_path)
    assert photos.files == ["unsorted_owl.png", "stapler.png"]
    assert photos.labels.tolist() == [0, 1] and photos.subcategories == ["birds", "office"]
    # The shipped photos: no two are the same pixels, so no copy can cross the split.
    shipped = load_photos(IMAGES)
    assert len({image.tobytes() for image in shipped.images}) == len(shipped) == 1561


def test_a_reviewed_correction_labels_every_copy_of_the_photo_and_must_name_a_listed_file(
    tmp_path,
):
    from PIL import Image

    drawing = np.zeros((128, 128, 3), np.uint8)
    drawing[40:90, 30:100] = (200, 120, 40)
    for name in ("padlock.png", "unsorted_padlock.png"):
        Image.fromarray(drawing).save(tmp_path / name)
    Image.fromarray(255 - drawing).save(tmp_path / "cow.png")
    (tmp_path / "manifest.csv").write_text(
        "file,label,category,subcategory,source\n"
        "padlock.png,animal,animals,,\n"
        "unsorted_padlock.png,no_animal,unsorted,,\n"
        "cow.png,no_animal,unsorted,,\n"
    )
    corrections = tmp_path / "corrections.csv"
    corrections.write_text(
        "file,label,reason\nunsorted_padlock.png,no_animal,a padlock\ncow.png,animal,a cow\n"
    )
    photos = load_photos(tmp_path)
    # Without the correction the padlock would be an animal (one of its files is).
    assert photos.files == ["padlock.png", "cow.png"] and photos.labels.tolist() == [1, 0]
    corrections.write_text("file,label,reason\ngone.png,animal,a cow\n")
    with pytest.raises(ValueError, match=re.escape("not in the manifest: ['gone.png']")):
        load_photos(tmp_path)
    corrections.write_text("file,label\ncow.png,animal\n")
    with pytest.raises(ValueError, match="the columns are file,label,reason"):
        load_photos(tmp_path)
    # The shipped corrections: 6 of the animals/ folder's photos show no animal, 14 of
    # the other folders' show one (a photo-by-photo review of the 1,561).
    shipped = load_photos(IMAGES)
    assert (shipped.labels == 0).sum() == 281 - 6 + 14


@pytest.mark.slow
def test_train_reports_logs_and_registers_the_version_with_its_threshold(tmp_path, monkeypatch):
    home = tmp_path / "home"
    result = run_cli(
        "mlsys.violation_detection", "train", "--limit", "160", "--components", "4",
        "--output", str(tmp_path / "report.json"),
        env=local_env(home) | {"TMPDIR": str(tmp_path)},
    )  # fmt: skip
    report = json.loads((tmp_path / "report.json").read_text())
    assert {"test", "validation", "baseline"} <= set(report)
    for part in ("test", "validation", "baseline"):
        assert set(report[part]) == {"roc_auc", "precision", "recall", "threshold", "photos",
                                     "no_animal"}  # fmt: skip
        assert 0 <= report[part]["roc_auc"] <= 1
    assert report["test"]["threshold"] == report["validation"]["threshold"]  # chosen once
    # The threshold reaches the target on validation, or flags nothing at all.
    assert report["validation"]["precision"] >= 0.95
    assert report["test"]["photos"] + report["validation"]["photos"] < 160
    assert "classifier, test" in result.stdout and "registered version 1" in result.stdout

    import mlflow
    from mlsys.common.tracking import CHAMPION, configure_mlflow
    from mlsys.violation_detection.tracking import EXPERIMENT, MODEL_NAME, THRESHOLD_TAG

    monkeypatch.setenv("MLSYS_HOME", str(home))
    monkeypatch.setenv("MLSYS_PROFILE", "local")
    configure_mlflow(EXPERIMENT)
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    assert str(champion.version) == "1"  # nobody to beat
    assert float(champion.tags[THRESHOLD_TAG]) == report["test"]["threshold"]
    run = client.get_run(champion.run_id)
    assert run.data.metrics["test.roc_auc"] == pytest.approx(report["test"]["roc_auc"])
    assert run.data.params["model.components"] == "4" and len(run.data.params["data"]) == 16
    # The drift check's reference: the validation photos' scores and labels.
    from mlsys.aianimals.moderation import DRIFT_REFERENCE_ARTIFACT

    reference = json.loads(
        Path(client.download_artifacts(run.info.run_id, DRIFT_REFERENCE_ARTIFACT, str(tmp_path)))
        .read_text()
    )  # fmt: skip
    assert len(reference["probability"]) == len(reference["no_animal"])
    assert len(reference["probability"]) == report["validation"]["photos"]
    assert sum(reference["no_animal"]) == report["validation"]["no_animal"]


def test_the_drawing_crop_fills_the_photo_with_the_drawing_up_to_four_times_its_size():
    from mlsys.violation_detection.features import drawing_crop

    def page(top, left, height, width):
        photo = np.ones((128, 128, 3), np.float32)
        photo[top : top + height, left : left + width] = 0.0
        return photo

    def inked(photo):  # first and last rows, then columns, with ink
        rows, columns = (np.flatnonzero((photo.min(-1) < 0.5).any(axis)) for axis in (1, 0))
        return rows[0], rows[-1], columns[0], columns[-1]

    photos = np.stack([page(10, 30, 64, 32), page(90, 90, 8, 8), np.ones((128, 128, 3))])
    cropped = drawing_crop(photos.astype(np.float32))
    assert cropped.shape == photos.shape
    # 64 x 32 px: its long side fills the photo, centred across.
    assert inked(cropped[0]) == (0, 127, 32, 95)
    # 8 x 8 px: zoomed 4 times at most (to 32 px), centred.
    assert inked(cropped[1]) == (48, 79, 48, 79)
    np.testing.assert_array_equal(cropped[2], photos[2])  # blank: as it was


def test_the_fisher_vectors_are_those_of_the_fitted_mixture_and_a_blank_photo_has_none():
    from scipy.special import softmax

    from mlsys.violation_detection.features import grid_places
    from mlsys.violation_detection.train import FisherVectorEncoder

    photos = load_photos(IMAGES, limit=30)
    images = np.concatenate([photos.images, np.full((1, 128, 128, 3), 255, np.uint8)])
    encoder = FisherVectorEncoder(cells=(8,), components=3, dims=5, sample=5000).fit(photos.images)
    [descriptors] = encoder.descriptors(images)
    assert descriptors.shape == (31, 25 * 25, 128)  # 32 px patches every 4 px of 128
    norms = np.linalg.norm(descriptors**2, axis=-1)  # square roots of unit histograms
    assert np.allclose(norms[norms > 0], 1, atol=1e-4) and (norms[-1] == 0).all()
    vectors = encoder.transform(images)
    assert vectors.shape == (31, 5 * 2 * 3 * (5 + 2)) and (vectors[-1] == 0).all()
    # One photo at a time, or on one thread: the same vectors.
    np.testing.assert_allclose(encoder.transform(images[:1]), vectors[:1], atol=1e-6)
    encoder.set_params(threads=1)
    np.testing.assert_allclose(encoder.transform(images), vectors, atol=1e-6)

    # The definition, descriptor by descriptor (Sanchez et al., 2013, eq. 16-17), over the
    # whole photo and over each quarter (rows then columns split at 12 of the 25).
    [(mean, projection)], [(means, precisions, weights)] = encoder.pca_, encoder.mixtures_
    rows, columns = np.divmod(np.arange(25 * 25), 25)
    regions = [rows >= 0] + [((rows < 12) == top) & ((columns < 12) == left)
                             for top in (True, False) for left in (True, False)]  # fmt: skip
    for photo, expected in zip(descriptors[:5], vectors[:5], strict=True):
        kept = photo.max(axis=1) > 0
        z = np.concatenate([(photo - mean) @ projection, grid_places(len(photo))], 1)
        u = (z[:, None] - means) * precisions  # descriptor, component, dim
        log_density = np.log(weights) + np.log(precisions).sum(1) - 0.5 * (u * u).sum(2)
        posteriors = softmax(log_density, axis=1)[..., None]
        blocks = []
        for region in regions:
            chosen = kept & region
            count = max(chosen.sum(), 1)  # a blank quarter has the zero vector
            first = (posteriors * u)[chosen].sum(0) / (count * np.sqrt(weights)[:, None])
            second = (posteriors * (u * u - 1))[chosen].sum(0) / (
                count * np.sqrt(2 * weights)[:, None]
            )
            vector = np.concatenate([first.ravel(), second.ravel()])
            vector = np.sign(vector) * np.sqrt(np.abs(vector))
            blocks.append(vector / max(np.linalg.norm(vector), 1e-12))
        joined = np.concatenate(blocks)
        np.testing.assert_allclose(expected, joined / np.linalg.norm(joined), atol=2e-4)
