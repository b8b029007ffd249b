"""The real AIAnimals master data (dataset/aianimals) and the image manifest, as frames."""

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

DATASET_DIR = Path("dataset")  # the repository's (or the image's) dataset/, from the working dir
MASTER_DIR = DATASET_DIR / "aianimals"
IMAGES_DIR = DATASET_DIR / "images"


class InvalidDataset(ValueError):
    """A dataset file is missing or malformed; the message names the file and the record."""


@dataclass
class MasterData:
    categories: pd.DataFrame  # id, name_en, name_ja
    subcategories: pd.DataFrame  # id, animal_category_id, name_en, name_ja
    violation_types: pd.DataFrame  # id, name
    users: pd.DataFrame  # id, handle_name, email_address, password, age, gender, ...


def _records(path: Path, fields: list[str]) -> list[tuple[str, dict]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidDataset(f"{path}: {error}") from error
    for key, record in data.items():
        missing = [f for f in fields if f not in record]
        if missing:
            raise InvalidDataset(f"{path}: record {key!r}: missing {', '.join(missing)}")
    return list(data.items())


def read_master_data(directory: Path = MASTER_DIR) -> MasterData:
    categories = pd.DataFrame(
        [
            {"id": r["category"], "name_en": r["name_en"], "name_ja": r["name_ja"]}
            for _, r in _records(
                directory / "animal_category.json", ["category", "name_en", "name_ja"]
            )
        ]
    )
    subcategories = pd.DataFrame(
        [
            {
                "id": r["subcategory"],
                "animal_category_id": r["category"],
                "name_en": r["name_en"],
                "name_ja": r["name_ja"],
            }
            for _, r in _records(
                directory / "animal_subcategory.json",
                ["category", "subcategory", "name_en", "name_ja"],
            )
        ]
    )
    violation_types = pd.DataFrame(
        [
            {"id": k, "name": r["name"]}
            for k, r in _records(directory / "violation_type.json", ["name"])
        ]
    )
    user_fields = ["handle_name", "email_address", "password", "age", "gender", "created_at"]
    users = pd.DataFrame(
        [
            {"id": k, **{f: r[f] for f in user_fields}, "deactivated": bool(r.get("deactivated"))}
            for k, r in _records(directory / "user.json", user_fields)
        ]
    )
    users["created_at"] = pd.to_datetime(users["created_at"]).dt.tz_localize("UTC")
    unknown = set(subcategories["animal_category_id"]) - set(categories["id"])
    if unknown:
        raise InvalidDataset(f"animal_subcategory.json: unknown categories {sorted(unknown)}")
    return MasterData(categories, subcategories, violation_types, users)


def read_image_manifest(directory: Path = IMAGES_DIR) -> pd.DataFrame:
    """file, label (animal | no_animal), category, subcategory, source."""
    manifest = pd.read_csv(directory / "manifest.csv", dtype=str, keep_default_na=False)
    if set(manifest["label"]) - {"animal", "no_animal"}:
        raise InvalidDataset(f"{directory / 'manifest.csv'}: labels must be animal or no_animal")
    return manifest
