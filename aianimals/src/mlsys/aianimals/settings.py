"""Settings of AIAnimals' own behaviour (the backing services' are in mlsys.common)."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mlsys.common.serving import Networks, networks
from mlsys.common.settings import platform_settings, require_secret


class SearchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEARCH_")

    # None: Elasticsearch in the services profile, the local engine under MLSYS_HOME in the
    # local one. `local` also serves a services deployment without Elasticsearch (with one
    # API replica, as the index is then a file).
    engine: Literal["elasticsearch", "local"] | None = None


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_")

    secret_key: SecretStr = SecretStr("")  # empty: a development key, refused elsewhere
    token_minutes: int = 60 * 24
    # Argon2id cost (RFC 9106 / OWASP: 19 MiB, t=2). Hashes carry their own parameters,
    # so lowering these (tests) never breaks verification of stored hashes.
    hash_memory_kib: int = 19_456
    hash_time_cost: int = 2
    # Failed logins allowed in a window, per account and per client, before a 429.
    login_failures_per_account: int = 5
    login_failures_per_client: int = 50
    login_window_seconds: int = 900
    # The proxies whose X-Forwarded-For the API believes (addresses or networks, comma
    # separated): the A/B test proxy and the ingress controller in a deployment. Empty:
    # nobody's; every client is then the address it connects from.
    trusted_proxies: Annotated[Networks, NoDecode] = ()
    # How long a replica trusts what it read of a user's status and token version: a
    # token revoked on another replica stops working there within this time.
    user_cache_seconds: float = 5.0

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        return networks(value) if isinstance(value, str) else value


class ModerationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODERATION_")

    # Whether search shows a post before the classifier has judged its photo. `shown` (the
    # default): a new post appears at once and leaves the index if judged a violation, so
    # a classifier outage shows posts nobody checked. `hidden`: a post is indexed only once
    # judged (the detection consumer announces every verdict), so an outage delays new
    # posts instead; the seeded posts too wait for their verdicts. Either way the API's
    # /metrics reports the posts waiting for a verdict and the oldest one's age.
    unjudged_posts: Literal["shown", "hidden"] = "shown"


class MailSettings(BaseSettings):
    """Where the account mails (a sign-up's confirmation link) go."""

    model_config = SettingsConfigDict(env_prefix="MAIL_")

    # `smtp://[user:password@]host[:port]` (STARTTLS when the server offers it),
    # `smtps://...` (TLS from the start), or `file:///folder` (one .eml file per mail, for
    # development and tests). Empty: MLSYS_HOME/mail in development, refused elsewhere.
    url: SecretStr = SecretStr("")
    sender: str = "AIAnimals <no-reply@aianimals.invalid>"
    # The web client's address as users reach it: a link is `<this>#verify=<token>`.
    web_client_url: str = "http://127.0.0.1:8000/app/"
    # How long a confirmation link works, and the sign-up keeps its handle name.
    registration_hours: float = 24.0


def mail_settings() -> MailSettings:
    settings = MailSettings()
    require_secret("MAIL_URL", settings.url)
    if not settings.url.get_secret_value():
        settings.url = SecretStr((platform_settings().home / "mail").resolve().as_uri())
    return settings


def moderation_settings() -> ModerationSettings:
    return ModerationSettings()


def search_settings() -> SearchSettings:
    return SearchSettings()


# HS256 signs with the key as its only secret: RFC 7518 (3.2) asks for a key at least as
# long as the hash, 32 bytes (`make secrets` writes 48).
MIN_SECRET_KEY_BYTES = 32


def auth_settings() -> AuthSettings:
    settings = AuthSettings()
    require_secret("AUTH_SECRET_KEY", settings.secret_key)
    key = settings.secret_key.get_secret_value()
    if not key:
        settings.secret_key = SecretStr("development-only-key-never-used-in-production")
    elif len(key.encode()) < MIN_SECRET_KEY_BYTES:
        raise RuntimeError(
            f"AUTH_SECRET_KEY has {len(key.encode())} bytes: a signing key needs at least "
            f"{MIN_SECRET_KEY_BYTES} (`make secrets` writes one)"
        )
    return settings


# What `generate` keeps beside the data, for evaluation only (never loaded, never trained on)
HIDDEN_QUALITY_FILE = "hidden_quality.csv"  # each post's hidden quality: the click model's truth
SYNONYM_QUERIES_FILE = "synonym_queries.json"  # held-out queries with what they mean


def generated_dir() -> Path:
    """Where `python -m mlsys.batch generate` writes by default, and where the search jobs
    look for what it keeps beside the data (the hidden quality, the held-out synonym
    queries): the local home's aianimals/ (MLSYS_HOME), never the working directory's."""
    return platform_settings().home / "aianimals"
