"""Photo storage: a directory (the local home, a compose volume or a Kubernetes PVC).

Keys are relative paths; writes go through a temporary file and a rename, so a reader
never sees half a photo.
"""

import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

from mlsys.common.settings import storage_root, storage_settings


class InvalidKey(ValueError):
    """A key that would leave the storage directory."""


def path_of(key: str) -> Path:
    root = storage_root().resolve()
    path = (root / key).resolve()
    if not path.is_relative_to(root) or path == root:
        raise InvalidKey(f"invalid storage key: {key!r}")
    return path


def put(key: str, data: bytes) -> None:
    path = path_of(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as temporary:
        temporary.write(data)
    os.replace(temporary.name, path)


def put_file(key: str, source: Path) -> bool:
    """Copy a file in unless the key is already stored; returns whether it copied."""
    path = path_of(key)
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


@cache
def _public_url() -> str:
    return storage_settings().public_url.rstrip("/")


def url_of(key: str) -> str:
    """Where clients fetch a stored photo (STORAGE_PUBLIC_URL is read once per process)."""
    return f"{_public_url()}/{key}"
