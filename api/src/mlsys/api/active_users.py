"""Whether a token still speaks for its user: the user exists, is active, and has not
bumped their token version since the token was issued (revocation).

Every authenticated request asks, so the answer is remembered per user for
`AUTH_USER_CACHE_SECONDS` (default 5): a revocation takes effect at once in the process
that made it (it calls `forget`) and within that time in every other replica. One
database read per user per interval, instead of one per request, keeps the cached search
(about 100 µs) from paying a query for each answer.
"""

import time

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine, select

from mlsys.aianimals.tables import User
from mlsys.api.security import TokenClaims


class ActiveUsers:
    def __init__(self, engine: Engine, seconds: float, capacity: int = 100_000):
        self.engine, self.seconds, self.capacity = engine, seconds, capacity
        self._known: dict[str, tuple[int | None, float]] = {}  # id -> (version, until)

    def _current_version(self, user_id: str) -> int | None:
        """The user's token version; None when the user is unknown or deactivated."""
        statement = select(User.token_version).where(
            User.id == user_id, User.deactivated.is_(False)
        )
        with self.engine.connect() as connection:
            return connection.scalar(statement)

    async def accept(self, claims: TokenClaims) -> bool:
        now = time.monotonic()
        known = self._known.get(claims.user_id)
        if known is None or known[1] <= now:
            version = await run_in_threadpool(self._current_version, claims.user_id)
            if len(self._known) >= self.capacity:
                self._known.clear()  # bounded memory; the next requests read again
            self._known[claims.user_id] = (version, now + self.seconds)
        else:
            version = known[0]
        return version is not None and version == claims.version

    def forget(self, user_id: str) -> None:
        """The user's state changed here: read it again on the next request."""
        self._known.pop(user_id, None)
