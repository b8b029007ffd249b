"""Settings per backing service, read from the environment (same names everywhere).

Nothing is read at import time: call the functions, so tests and CLIs can change the
environment first.
"""

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Profile(StrEnum):
    local = "local"  # one machine, embedded adapters under MLSYS_HOME
    services = "services"  # PostgreSQL, MLflow server, ... (compose / Kubernetes)


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLSYS_")

    profile: Profile = Profile.local
    home: Path = Path(".mlsys")  # where the local profile keeps its files
    environment: str = "development"  # anything else refuses to run without secrets


class PostgresSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSTGRES_")

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: SecretStr = SecretStr("")
    db: str = "mlsys"

    def url(self, db: str | None = None) -> str:
        password = self.password.get_secret_value()
        auth = f"{self.user}:{password}" if password else self.user
        return f"postgresql+psycopg://{auth}@{self.host}:{self.port}/{db or self.db}"


class MlflowSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLFLOW_")

    tracking_uri: str | None = None  # None: the local store under MLSYS_HOME
    experiment_name: str = "beverage_sales_forecasting"
    registered_model_name: str = "beverage_sales_forecasting"


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REDIS_")

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    password: SecretStr = SecretStr("")
    key_prefix: str = "mlsys:"  # several deployments (or tests) can share one server
    cache_ttl_seconds: int = 300

    def url(self) -> str:
        password = self.password.get_secret_value()
        auth = f":{password}@" if password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"


class RabbitmqSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RABBITMQ_")

    host: str = "127.0.0.1"
    port: int = 5672
    user: str = "guest"
    password: SecretStr = SecretStr("guest")
    vhost: str = "/"
    max_attempts: int = 3  # deliveries of one message before it is dead-lettered


class SearchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEARCH_")

    # None: Elasticsearch in the services profile, SQLite FTS5 under MLSYS_HOME in the
    # local one. `local` also serves a services deployment without Elasticsearch (with one
    # API replica, as the index is then a file).
    engine: Literal["elasticsearch", "local"] | None = None


class ElasticsearchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ELASTICSEARCH_")

    url: str = "http://127.0.0.1:9200"
    user: str = ""
    password: SecretStr = SecretStr("")
    index: str = "animals"


class StorageSettings(BaseSettings):
    """Photos: a directory (local home, a compose volume or a Kubernetes PVC)."""

    model_config = SettingsConfigDict(env_prefix="STORAGE_")

    root: Path | None = None  # None: MLSYS_HOME/storage
    public_url: str = "/v0/photos"  # where clients fetch what is stored


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_")

    secret_key: SecretStr = SecretStr("")  # empty: a development key, refused elsewhere
    token_minutes: int = 60 * 24
    # Argon2id cost (RFC 9106 / OWASP: 19 MiB, t=2). Hashes carry their own parameters,
    # so lowering these (tests) never breaks verification of stored hashes.
    hash_memory_kib: int = 19_456
    hash_time_cost: int = 2


def platform_settings() -> PlatformSettings:
    return PlatformSettings()


def postgres_settings() -> PostgresSettings:
    return PostgresSettings()


def mlflow_settings() -> MlflowSettings:
    return MlflowSettings()


def redis_settings() -> RedisSettings:
    return RedisSettings()


def rabbitmq_settings() -> RabbitmqSettings:
    return RabbitmqSettings()


def elasticsearch_settings() -> ElasticsearchSettings:
    return ElasticsearchSettings()


def search_settings() -> SearchSettings:
    return SearchSettings()


def storage_root() -> Path:
    root = StorageSettings().root or platform_settings().home / "storage"
    root.mkdir(parents=True, exist_ok=True)
    return root


def storage_settings() -> StorageSettings:
    return StorageSettings()


def auth_settings() -> AuthSettings:
    settings = AuthSettings()
    if not settings.secret_key.get_secret_value():
        environment = platform_settings().environment
        if environment != "development":
            raise RuntimeError(
                f"AUTH_SECRET_KEY is empty while MLSYS_ENVIRONMENT={environment}: set it from "
                "the Secret (`make secrets`), or use MLSYS_ENVIRONMENT=development"
            )
        settings.secret_key = SecretStr("development-only-key-never-used-in-production")
    return settings


def database_url() -> str:
    """SQLite file under MLSYS_HOME for the local profile, PostgreSQL for services."""
    platform = platform_settings()
    if platform.profile is Profile.services:
        postgres = postgres_settings()
        if platform.environment != "development" and not postgres.password.get_secret_value():
            raise RuntimeError(
                f"POSTGRES_PASSWORD is empty while MLSYS_ENVIRONMENT={platform.environment}: "
                "set it from the Secret (`make secrets`), or use MLSYS_ENVIRONMENT=development"
            )
        return postgres.url()
    platform.home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(platform.home / 'mlsys.db').resolve()}"


def mlflow_tracking_uri() -> str:
    configured = mlflow_settings().tracking_uri
    if configured:
        return configured
    home = platform_settings().home
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(home / 'mlflow.db').resolve()}"
