"""The classical baseline scored beside the CNN on the same split: gradient boosting on
colour histograms (hue, saturation, value) and on gradient orientations and magnitudes."""

import numpy as np
from PIL import Image

BINS = 16


def histogram_features(images: np.ndarray) -> np.ndarray:
    """Per image: HSV histograms, the histogram of gradient orientations weighted by
    magnitude, of magnitudes, and three summaries (contrast, white share, mean edge)."""
    rows = []
    for image in images:
        hsv = np.asarray(Image.fromarray(image).convert("HSV"), dtype=np.float32) / 255
        colour = [np.histogram(hsv[..., c], bins=BINS, range=(0, 1))[0] for c in range(3)]
        gray = image.astype(np.float32).mean(axis=-1) / 255
        dy, dx = np.gradient(gray)
        magnitude, angle = np.hypot(dx, dy), np.arctan2(dy, dx)
        orientation = np.histogram(angle, bins=BINS, range=(-np.pi, np.pi), weights=magnitude)[0]
        strength = np.histogram(magnitude, bins=BINS, range=(0, 0.5))[0]
        summary = [gray.std(), (gray > 0.95).mean(), magnitude.mean()]
        rows.append(np.concatenate([*colour, orientation, strength, summary]))
    return np.asarray(rows, dtype=np.float32)


def train_baseline(images: np.ndarray, labels: np.ndarray, seed: int):
    """A fitted HistGradientBoostingClassifier (class weights balanced, as the CNN's)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(
        max_iter=300, learning_rate=0.05, class_weight="balanced", random_state=seed
    )
    return model.fit(histogram_features(images), labels)


def baseline_scores(model, images: np.ndarray) -> np.ndarray:
    """The probability of "no animal" per image."""
    return model.predict_proba(histogram_features(images))[:, 1]
