"""The labelled photos shipped in dataset/images (animal / no_animal, 128x128 RGB PNG,
Open Clip Art), as the models that learn from them read them: the no-animal classifier
(violation_detection) and the image embedding of similar-image search (search)."""

import csv
import hashlib
import io
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

IMAGE_SIZE = 128  # what the dataset holds, what the model and the server take
NO_ANIMAL = 1  # the label of the no-animal classifier's positive class: the violation
MAX_PHOTO_BYTES = 5 * 1024 * 1024  # as the API's upload limit
# The largest request body anyone passes on: a photo and the form fields around it.
MAX_UPLOAD_BYTES = MAX_PHOTO_BYTES + 64 * 1024
# Smaller is no photo the classifier can judge; larger, a decompression bomb (a 170 KB PNG
# of 6300 x 6300 took 1.4 s and 160 MB to decode and encode again). Checked on the header,
# before any pixel is decoded.
MIN_SIDE, MAX_PIXELS = 32, 25_000_000
# Decoding costs far more than the upload: at most two photos at once in a process (8
# concurrent uploads took an API from 729 MB to 1.89 GB).
_DECODING = threading.BoundedSemaphore(2)
FORMATS = {"PNG": "png", "JPEG": "jpg"}  # what is decoded -> the stored extension
T = TypeVar("T")


class UnreadablePhoto(ValueError):
    """A photo no model can take; `reason` is `too_large`, `wrong_size` or `not_an_image`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Photos:
    images: np.ndarray  # N x 128 x 128 x 3, uint8 RGB
    labels: np.ndarray  # N, 1 = no animal
    subcategories: list[str]
    files: list[str]  # relative to the dataset's root

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # indices into Photos
    validation: np.ndarray
    test: np.ndarray


def model_input(image: Image.Image) -> np.ndarray:
    """A photo as the model takes it, 128 x 128 RGB uint8: the same for training photos
    and for what the server is sent."""
    rgb = image.convert("RGB")
    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _decoded(data: bytes, name: str, then: Callable[[Image.Image], T]) -> T:
    """`then` of the photo in `data`, decoded; UnreadablePhoto saying why not. The one
    place that says what a photo is, for the API's uploads, the classifier and the jobs."""
    if len(data) > MAX_PHOTO_BYTES:
        raise UnreadablePhoto("too_large", f"{name}: over 5 MiB")
    with _DECODING:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as image:
                    if image.format not in FORMATS:
                        raise UnreadablePhoto("not_an_image", f"{name}: not a PNG or JPEG image")
                    width, height = image.size
                    if min(width, height) < MIN_SIDE or width * height > MAX_PIXELS:
                        raise UnreadablePhoto(
                            "wrong_size",
                            f"{name}: {width}x{height} pixels; a photo has sides of at least "
                            f"{MIN_SIDE} and at most {MAX_PIXELS:,} pixels",
                        )
                    image.load()
                    return then(image)
        except UnreadablePhoto:
            raise
        except Exception:  # whatever a malformed file makes a decoder raise (a palette
            # PNG without its palette: UnboundLocalError): it is not an image
            raise UnreadablePhoto("not_an_image", f"{name}: not a PNG or JPEG image") from None


def photo_from_bytes(data: bytes, name: str = "the photo") -> np.ndarray:
    """A stored or uploaded photo (PNG or JPEG) as the models take it, or UnreadablePhoto
    saying why not."""
    return _decoded(data, name, model_input)


def reencoded_photo(data: bytes, name: str = "the photo") -> tuple[bytes, str]:
    """An upload decoded and encoded again, and its extension, or UnreadablePhoto saying
    why not. Only pixels survive (and a palette's transparency): no polyglot, script,
    metadata (GPS) or colour profile is kept."""

    def encoded(image: Image.Image) -> tuple[bytes, str]:
        image.info = {k: v for k, v in image.info.items() if k == "transparency"}
        buffer = io.BytesIO()
        image.save(buffer, format=image.format)
        return buffer.getvalue(), FORMATS[image.format or ""]

    return _decoded(data, name, encoded)


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return model_input(image)


def load_photos(root: Path, limit: int | None = None, seed: int = 0) -> Photos:
    """The distinct photos listed in ROOT/manifest.csv; `limit` keeps a stratified sample
    (tests).

    Open Clip Art files some drawings in two folders (animals/ and animals/birds/, or
    animals/ and unsorted/): 108 photos of the shipped 1,725 are there two or three times.
    Kept as they are, a copy in training and another in the test set (51 of them with the
    seed 0) would be scored as if unseen, and seven drawings would be both "animal" and
    "no animal". So each photo is kept once, under its first file, and is an animal if any
    of its files is in animals/ (the folder is the label's only source); its subcategory is
    the most specific one of its files.

    Where the folder is wrong, ROOT/corrections.csv (file,label,reason) says what the photo
    shows, and its label wins for every copy of that photo: a reviewed label, as a
    moderator's decision is."""
    rows = _read_labelled(root / "manifest.csv", "file,label,category,subcategory,source")
    if not rows:
        raise ValueError(f"{root / 'manifest.csv'} lists no photos")
    corrections = {}
    if (root / "corrections.csv").exists():
        corrected = _read_labelled(root / "corrections.csv", "file,label,reason")
        corrections = {row["file"]: row["label"] for row in corrected}
        stale = corrections.keys() - {row["file"] for row in rows}
        if stale:
            raise ValueError(f"{root / 'corrections.csv'}: not in the manifest: {sorted(stale)}")
    distinct: dict[bytes, dict] = {}
    for row in rows:
        image = decoded(root / row["file"])
        kept = distinct.setdefault(
            hashlib.sha256(image.tobytes()).digest(), {**row, "image": image, "files": []}
        )
        kept["files"].append(row["file"])
        if row["label"] == "animal" and (kept["label"] != "animal" or not kept["subcategory"]):
            kept.update(label="animal", category=row["category"], subcategory=row["subcategory"])
    rows = list(distinct.values())
    for row in rows:
        reviewed = {corrections[file] for file in row["files"] if file in corrections}
        if len(reviewed) > 1:
            raise ValueError(f"corrections.csv gives {row['files']} (one photo) two labels")
        if reviewed:
            row["label"] = reviewed.pop()
    labels = np.array([row["label"] == "no_animal" for row in rows], dtype=np.int32)
    chosen = np.arange(len(rows))
    if limit is not None and limit < len(rows):
        chosen = np.sort(_stratified_sample(labels, limit, seed))
    rows = [rows[i] for i in chosen]
    return Photos(
        images=np.stack([row["image"] for row in rows]),
        labels=labels[chosen],
        subcategories=[row["subcategory"] or row["category"] for row in rows],
        files=[row["file"] for row in rows],
    )


def _read_labelled(path: Path, columns: str) -> list[dict]:
    with path.open(newline="") as table:
        reader = csv.DictReader(table)
        if ",".join(reader.fieldnames or []) != columns:
            raise ValueError(f"{path}: the columns are {columns}, not {reader.fieldnames}")
        rows = list(reader)
    unknown = {row["label"] for row in rows} - {"animal", "no_animal"}
    if unknown:
        raise ValueError(f"{path}: unknown labels {sorted(unknown)}")
    return rows


def _stratified_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = []
    for label in (0, 1):
        members = np.flatnonzero(labels == label)
        share = max(1, round(size * len(members) / len(labels)))
        picked.append(rng.choice(members, size=min(share, len(members)), replace=False))
    return np.concatenate(picked)


def split(labels: np.ndarray, seed: int, validation: float = 0.15, test: float = 0.15) -> Split:
    """Stratified by label: each part has the dataset's share of no-animal photos."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = max(1, round(len(members) * test))
        n_validation = max(1, round(len(members) * validation))
        parts["test"].append(members[:n_test])
        parts["validation"].append(members[n_test : n_test + n_validation])
        parts["train"].append(members[n_test + n_validation :])
    return Split(**{name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()})


def fingerprint(photos: Photos) -> str:
    """What the model learned from: the files, their labels and their pixels."""
    digest = hashlib.sha256()
    for file, label in zip(photos.files, photos.labels.tolist(), strict=True):
        digest.update(f"{file}\0{label}\n".encode())
    digest.update(photos.images.tobytes())
    return digest.hexdigest()[:16]
