"""Password hashing with Argon2id; the cost comes from AuthSettings."""

from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mlsys.aianimals.settings import AuthSettings


def password_hasher() -> PasswordHasher:
    settings = AuthSettings()
    return PasswordHasher(
        time_cost=settings.hash_time_cost, memory_cost=settings.hash_memory_kib, parallelism=1
    )


def hash_password(password: str) -> str:
    return password_hasher().hash(password)


def hash_passwords(passwords: list[str], workers: int = 4) -> list[str]:
    """Hash many passwords at once: argon2 releases the GIL, so threads use every core."""
    hasher = password_hasher()
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(hasher.hash, passwords))


def verify_password(password: str, password_hash: str | None) -> bool:
    """True if `password` matches. With no hash (unknown user) a dummy hash is still
    verified, so that response times do not tell which user names exist."""
    hasher = password_hasher()
    try:
        return hasher.verify(password_hash or _dummy_hash(hasher), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def _dummy_hash(hasher: PasswordHasher) -> str:
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = hasher.hash("not a password of anybody")
    return _DUMMY


_DUMMY: str | None = None
