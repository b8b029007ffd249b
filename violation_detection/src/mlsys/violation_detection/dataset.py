"""The photos moderators reviewed, as the classifier's retraining reads them; the shipped
photos, their split and their fingerprint are `mlsys.aianimals.photos`'s."""

import hashlib

import numpy as np
from PIL import Image

from mlsys.aianimals.photos import IMAGE_SIZE, Photos, model_input


def reviewed_photos(labels, store) -> Photos:
    """The photos moderators labelled (`review.labels()` rows: animal_id, photo_key,
    no_animal), decoded as the model takes them; a photo gone or undecodable is left out."""
    import io

    images, kept, files = [], [], []
    for row in labels.itertuples():
        data = store.get(row.photo_key)
        if data is None:
            continue
        try:
            with Image.open(io.BytesIO(data)) as image:
                images.append(model_input(image))
        except (OSError, SyntaxError, ValueError):
            continue
        kept.append(int(row.no_animal))
        files.append(f"post:{row.animal_id}")
    return Photos(
        images=np.stack(images) if images else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8),
        labels=np.array(kept, dtype=np.int32),
        subcategories=["reviewed"] * len(kept),
        files=files,
    )


def not_in(photos: Photos, held_out: np.ndarray) -> np.ndarray:
    """Which of `photos` are not pixel for pixel one of `held_out`: a reviewed post may
    show a dataset photo of the validation or test set, which training must never see."""
    seen = {hashlib.sha256(image.tobytes()).digest() for image in held_out}
    return np.array(
        [hashlib.sha256(image.tobytes()).digest() not in seen for image in photos.images],
        dtype=bool,
    )
