"""Initial load of AIAnimals: master data, users (hashed passwords), posts, likes, logs.

Idempotent: everything is upserted on natural keys, passwords are hashed only for users
not loaded yet, and an outbox message (`animal.created`, for search indexing and
moderation) is written only for posts that are new, in the same transaction.
"""

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.progress import Progress
from sqlalchemy import Connection, Engine, func, select

from mlsys.aianimals import storage
from mlsys.aianimals.database import upgrade_or_wait
from mlsys.aianimals.messages import Topic, add_to_outbox
from mlsys.aianimals.passwords import hash_passwords
from mlsys.aianimals.tables import (
    AccessLog,
    Animal,
    AnimalCategory,
    AnimalSubcategory,
    Like,
    OutboxMessage,
    User,
    ViolationType,
)
from mlsys.batch.dataset import InvalidDataset, MasterData
from mlsys.batch.generate import GeneratedActivity
from mlsys.common.bulk import bulk_upsert
from mlsys.common.logging import get_logger
from mlsys.common.settings import platform_settings

log = get_logger(__name__)
TABLES = (AnimalCategory, AnimalSubcategory, ViolationType, User, Animal, Like, AccessLog)


# Columns the running system owns once a row exists (moderation, the users themselves):
# loading the dataset again writes them for new rows only.
RUNNING_STATE: dict[type, tuple[str, ...]] = {User: ("deactivated",), Animal: ("deactivated",)}


@dataclass
class LoadSummary:
    written: dict[str, int]  # rows inserted or changed per table
    counts: dict[str, int]  # rows per table after the load
    new_posts: int
    photos_copied: int


def read_generated(directory: Path) -> GeneratedActivity:
    """The files written by `generate` (hidden_quality.csv is never loaded)."""
    try:
        animals = pd.read_csv(directory / "animals.csv", dtype=str)
        likes = pd.read_csv(directory / "likes.csv", dtype=str)
        logs = pd.read_csv(directory / "access_logs.csv", dtype=str, keep_default_na=False)
    except FileNotFoundError as error:
        raise InvalidDataset(
            f"{error.filename} is missing: run `python -m mlsys.batch generate --output "
            f"{directory}` first"
        ) from error
    for frame in (animals, likes, logs):
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    animals["updated_at"] = pd.to_datetime(animals["updated_at"], utc=True)
    animals = animals.astype({"animal_category_id": int, "animal_subcategory_id": int})
    for column in ("animal_category_id", "animal_subcategory_id", "position"):
        logs[column] = pd.to_numeric(logs[column].replace("", None)).astype("Int64")
    logs["model_name"] = logs["model_name"].replace("", None)
    logs["phrases"] = logs["phrases"].map(json.loads)
    return GeneratedActivity(animals, likes, logs, hidden_quality=pd.DataFrame())


def _users_with_hashes(connection: Connection, users: pd.DataFrame, progress: Progress):
    """Users with `password_hash`: kept for users already loaded, new ones hashed now.

    The dataset's passwords are public (every seeded user has `password`): outside
    development each new seeded user gets a random password nobody knows instead, so the
    demo accounts exist but nobody can log in as them."""
    stored = dict(connection.execute(select(User.id, User.password_hash)).all())
    new = users.loc[~users["id"].isin(stored.keys())]
    if platform_settings().environment != "development":
        log.warning("environment is not development: seeded users get random passwords")
        new = new.assign(password=[secrets.token_urlsafe(32) for _ in range(len(new))])
    task = progress.add_task("hashing passwords", total=len(new))
    hashes: dict[str, str] = {}
    for start in range(0, len(new), 256):
        chunk = new.iloc[start : start + 256]
        hashes.update(zip(chunk["id"], hash_passwords(chunk["password"].tolist()), strict=True))
        progress.advance(task, len(chunk))
    password_hash = users["id"].map(lambda user_id: stored.get(user_id) or hashes[user_id])
    return users.drop(columns=["password"]).assign(password_hash=password_hash)


def initial_load(
    engine: Engine, master: MasterData, activity: GeneratedActivity, images_dir: Path
) -> LoadSummary:
    upgrade_or_wait(engine)
    unknown_photos = set(activity.animals["photo_key"].str.removeprefix("dataset/")) - {
        str(p.relative_to(images_dir)) for p in images_dir.rglob("*.png")
    }
    if unknown_photos:
        raise InvalidDataset(
            f"animals.csv: photos not in {images_dir}: {sorted(unknown_photos)[:3]}"
        )
    written = {}
    with Progress() as progress, engine.begin() as connection:
        users = _users_with_hashes(connection, master.users, progress)
        known_posts = set(connection.scalars(select(Animal.id)))
        logs = activity.access_logs.assign(
            phrases=activity.access_logs["phrases"].map(lambda p: json.dumps(p, ensure_ascii=False))
        )
        frames = {
            AnimalCategory: master.categories.assign(is_deleted=False),
            AnimalSubcategory: master.subcategories.assign(is_deleted=False),
            ViolationType: master.violation_types,
            User: users,
            Animal: activity.animals.assign(deactivated=False, is_generated=True),
            Like: activity.likes,
            AccessLog: logs,
        }
        task = progress.add_task("loading tables", total=len(frames))
        for table, frame in frames.items():
            owned = RUNNING_STATE.get(table, ())
            written[table.__tablename__] = bulk_upsert(connection, table, frame, owned)
            progress.advance(task)
        new_posts = activity.animals.loc[~activity.animals["id"].isin(known_posts), "id"]
        add_to_outbox(connection, Topic.animal_created, [{"animal_id": i} for i in new_posts])
        counts = {
            table.__tablename__: connection.execute(
                select(func.count()).select_from(table)
            ).scalar_one()
            for table in (*TABLES, OutboxMessage)
        }
    store = storage.photo_store()
    copied = sum(
        store.put_file(key, images_dir / key.removeprefix("dataset/"))
        for key in activity.animals["photo_key"].unique()
    )
    return LoadSummary(written, counts, len(new_posts), copied)
