"""Photo storage, behind one interface, in one of two stores (STORAGE_BACKEND):

- `directory`: files under STORAGE_ROOT (default MLSYS_HOME/storage): the local profile.
  Writes go through a temporary file and a rename, so a reader never sees half a photo.
- `database`: the `photos` table of the AIAnimals database: the services profile's
  default. Every API replica and the initial load reach it over the network, so it works
  on any number of nodes without a ReadWriteMany volume (a ReadWriteOnce volume shared
  by pods on two nodes fails to attach), and a photo is written in the same transaction
  as its post: there is no photo without a post, nor a post without its photo.

Keys are relative paths (`uploads/ab/<id>.png`, `dataset/...`); photos are at most a few
MiB (the API refuses more than 5), which a database column holds well.
"""

import mimetypes
import os
import shutil
import tempfile
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from mlsys.aianimals.tables import Animal, Photo
from mlsys.common.settings import Profile, platform_settings, storage_root, storage_settings


class InvalidKey(ValueError):
    """A key that would leave the storage directory."""


class PhotoMissing(LookupError):
    """A post that does not exist, or whose photo is not stored."""


class PhotoStore(Protocol):
    def put(self, key: str, data: bytes, connection: Connection | None = None) -> None:
        """Store a photo; with `connection`, in its transaction where the store can."""

    def put_file(self, key: str, source: Path) -> bool:
        """Store a file unless the key is already stored; returns whether it stored."""

    def get(self, key: str) -> bytes | None: ...

    def discard(self, key: str) -> None:
        """Undo a `put` whose transaction failed (what a rollback did not undo)."""


def content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class DirectoryStore:
    def __init__(self, root: Path):
        self.root = root.resolve()

    def path_of(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidKey(f"invalid storage key: {key!r}")
        return path

    def put(self, key: str, data: bytes, connection: Connection | None = None) -> None:
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as temporary:
            temporary.write(data)
        os.replace(temporary.name, path)

    def put_file(self, key: str, source: Path) -> bool:
        path = self.path_of(key)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        with (
            source.open("rb") as data,
            tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as temporary,
        ):
            shutil.copyfileobj(data, temporary)
        os.replace(temporary.name, path)
        return True

    def get(self, key: str) -> bytes | None:
        try:
            path = self.path_of(key)
        except InvalidKey:
            return None
        return path.read_bytes() if path.is_file() else None

    def discard(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)


class DatabaseStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def _insert(self, connection: Connection, key: str, data: bytes) -> bool:
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        row = {"key": key, "data": data, "content_type": content_type(key),
               "created_at": datetime.now(UTC)}  # fmt: skip
        statement = dialect.insert(Photo).values(row).on_conflict_do_nothing()
        # RETURNING, not rowcount: psycopg reports -1 for a statement that may skip its row.
        return connection.scalar(statement.returning(Photo.key)) is not None

    def put(self, key: str, data: bytes, connection: Connection | None = None) -> None:
        if connection is not None:
            self._insert(connection, key, data)
            return
        with self.engine.begin() as own:
            self._insert(own, key, data)

    def put_file(self, key: str, source: Path) -> bool:
        with self.engine.begin() as connection:
            return self._insert(connection, key, source.read_bytes())

    def get(self, key: str) -> bytes | None:
        with self.engine.connect() as connection:
            return connection.scalar(select(Photo.data).where(Photo.key == key))

    def discard(self, key: str) -> None:
        """Nothing to do: the photo went in with the transaction that failed."""


@cache
def photo_store() -> PhotoStore:
    """The configured store, one per process."""
    backend = storage_settings().backend or (
        "database" if platform_settings().profile is Profile.services else "directory"
    )
    if backend == "database":
        from mlsys.aianimals.database import get_engine

        return DatabaseStore(get_engine())
    return DirectoryStore(storage_root())


@cache
def _public_url() -> str:
    return storage_settings().public_url.rstrip("/")


def url_of(key: str) -> str:
    """Where clients fetch a stored photo (STORAGE_PUBLIC_URL is read once per process)."""
    return f"{_public_url()}/{key}"


def read_post_photos(
    engine: Engine, store: PhotoStore, animal_ids: list[str], skip_missing: bool = False
) -> dict[str, bytes]:
    """The posts' photos, in the order of `animal_ids`, each stored photo read once however
    many posts show it (posts showing one photo get the same bytes object); raises
    PhotoMissing for the first post that has none, unless `skip_missing` leaves it out."""
    with engine.connect() as db:
        keys = dict(
            db.execute(select(Animal.id, Animal.photo_key).where(Animal.id.in_(animal_ids))).all()
        )
    read: dict[str, bytes | None] = {}
    photos = {}
    for animal_id in animal_ids:
        key = keys.get(animal_id)
        if key is not None and key not in read:
            read[key] = store.get(key)
        data = read.get(key) if key is not None else None
        if data is not None:
            photos[animal_id] = data
        elif not skip_missing:
            raise PhotoMissing(
                f"no post {animal_id}" if key is None
                else f"post {animal_id}: its photo {key} is not stored"
            )  # fmt: skip
    return photos
