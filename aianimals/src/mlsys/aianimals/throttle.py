"""Login throttling, for the API and the review portal alike (one count per account,
whichever a guess is made at): failed logins are counted per account and per client in
a window; past the limit, logins are refused (the API: 429 with Retry-After) until the
window ends, even with the right password. A success clears the account's count.

The account is the user an identifier resolves to (its id): the handle name, the address
and every spelling the database's case folding maps to that user share one count. An
identifier that names nobody counts under itself, folded.

The client is its address as the server resolves it through its trusted proxies
(mlsys.common.serving). A request whose client is unknown (a trusted proxy that named nobody) counts
against its account only: no count is ever kept for an address that all users share.

The counts live in the database, which every replica shares and which a login reads
anyway: in the cache they were evicted to make room for cached searches. They are read
and written on the caller's connection, in its transaction (the caller commits): a login
that held one pooled connection and waited for a second deadlocked the API at 64
concurrent logins once every connection was held by a waiting login.
"""

from datetime import UTC, datetime, timedelta
from math import ceil

from sqlalchemy import Connection, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from mlsys.aianimals.settings import AuthSettings
from mlsys.aianimals.tables import LoginFailure


class LoginThrottle:
    def __init__(self, settings: AuthSettings):
        self.settings = settings

    def _limits(self, account: str, client: str | None) -> dict[str, int]:
        limits = {f"login:account:{account}": self.settings.login_failures_per_account}
        if client is not None:
            limits[f"login:client:{client}"] = self.settings.login_failures_per_client
        return limits

    def retry_after(self, connection: Connection, account: str, client: str | None) -> int:
        """Seconds until the account may try again from this client (0: now)."""
        limits = self._limits(account, client)
        rows = connection.execute(
            select(LoginFailure.key, LoginFailure.failures, LoginFailure.window_ends).where(
                LoginFailure.key.in_(limits)
            )
        ).all()
        now = datetime.now(UTC)
        waits = [
            ceil((ends - now).total_seconds())
            for key, failures, ends in rows
            if failures >= limits[key] and ends > now
        ]
        return max(waits, default=0)

    def failed(self, connection: Connection, account: str, client: str | None) -> None:
        now = datetime.now(UTC)
        ends = now + timedelta(seconds=self.settings.login_window_seconds)
        expired = LoginFailure.window_ends <= now
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        for key in sorted(self._limits(account, client)):  # one order: no deadlocks
            statement = dialect.insert(LoginFailure).values(key=key, failures=1, window_ends=ends)
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[LoginFailure.key],
                    set_={  # a window that has ended starts again
                        "failures": case((expired, 1), else_=LoginFailure.failures + 1),
                        "window_ends": case((expired, ends), else_=LoginFailure.window_ends),
                    },
                )
            )
        # Housekeeping: rows whose window ended count nothing. Rows another login holds
        # are skipped, never waited for (no lock cycles with the counting).
        ended = (
            select(LoginFailure.key)
            .where(LoginFailure.window_ends < now)
            .limit(1000)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has one writer anyway
        )
        connection.execute(delete(LoginFailure).where(LoginFailure.key.in_(ended)))

    def succeeded(self, connection: Connection, account: str) -> None:
        keys = self._limits(account, None)
        connection.execute(delete(LoginFailure).where(LoginFailure.key.in_(keys)))
