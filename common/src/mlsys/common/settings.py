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
    # Unset means production: a deployment that forgot it still refuses to run without its
    # secrets. Only `development` (set by the Makefile and the tests) runs on the public
    # development defaults.
    environment: str = "production"


class PostgresSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSTGRES_")

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: SecretStr = SecretStr("")
    db: str | None = None  # None: the product's own database name

    def url(self, database: str) -> str:
        """The URL of POSTGRES_DB if set, else of the product's `database`."""
        password = self.password.get_secret_value()
        auth = f"{self.user}:{password}" if password else self.user
        return f"postgresql+psycopg://{auth}@{self.host}:{self.port}/{self.db or database}"


class MlflowSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLFLOW_")

    tracking_uri: str | None = None  # None: the local store under MLSYS_HOME
    # The tracking server's user (its basic-auth app); MLflow's client reads these itself.
    tracking_username: str | None = None
    tracking_password: SecretStr = SecretStr("")


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REDIS_")

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    password: SecretStr = SecretStr("")
    key_prefix: str = "mlsys:"  # several deployments (or tests) can share one server
    cache_ttl_seconds: int = 300

    def url(self) -> str:
        require_secret("REDIS_PASSWORD", self.password)  # an open cache can be poisoned
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
    # Deliveries of one message before it is dead-lettered: waits of 1, 2, 4, 8, 16 s, then
    # 30 s each, outlast an outage of a service a handler needs of about 3.5 minutes (the
    # classifier's, for moderation), and a message is handled within 30 s of its return.
    max_attempts: int = 12
    retry_base_seconds: float = 1.0  # wait before the 2nd delivery; doubled for each next
    retry_max_seconds: float = 30.0  # up to this


class ElasticsearchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ELASTICSEARCH_")

    url: str = "http://127.0.0.1:9200"
    user: str = ""
    password: SecretStr = SecretStr("")
    index: str = "animals"


class StorageSettings(BaseSettings):
    """Photos: a directory, or a table of the product's database (mlsys.aianimals.storage)."""

    model_config = SettingsConfigDict(env_prefix="STORAGE_")

    # None: `database` in the services profile (any number of nodes), else `directory`.
    backend: Literal["directory", "database"] | None = None
    root: Path | None = None  # the directory's: None is MLSYS_HOME/storage
    public_url: str = "/v0/photos"  # where clients fetch what is stored


class MetricsSettings(BaseSettings):
    """Where a process that is not an HTTP server reports (mlsys.common.metrics)."""

    model_config = SettingsConfigDict(env_prefix="METRICS_")

    port: int | None = None  # a worker (consumer, relay) serves /metrics here; None: not
    pushgateway_url: str | None = None  # a job pushes its run's metrics here; None: not


def platform_settings() -> PlatformSettings:
    return PlatformSettings()


def postgres_settings() -> PostgresSettings:
    return PostgresSettings()


def metrics_settings() -> MetricsSettings:
    return MetricsSettings()


def mlflow_settings() -> MlflowSettings:
    return MlflowSettings()


def redis_settings() -> RedisSettings:
    return RedisSettings()


def rabbitmq_settings() -> RabbitmqSettings:
    return RabbitmqSettings()


def elasticsearch_settings() -> ElasticsearchSettings:
    return ElasticsearchSettings()


def storage_root() -> Path:
    root = StorageSettings().root or platform_settings().home / "storage"
    root.mkdir(parents=True, exist_ok=True)
    return root


def storage_settings() -> StorageSettings:
    return StorageSettings()


def require_secret(variable: str, value: SecretStr) -> None:
    """Refuse an empty secret outside MLSYS_ENVIRONMENT=development."""
    environment = platform_settings().environment
    if environment != "development" and not value.get_secret_value():
        raise RuntimeError(
            f"{variable} is empty while MLSYS_ENVIRONMENT={environment}: set it from the "
            "Secret (`make secrets`), or use MLSYS_ENVIRONMENT=development"
        )


def database_url(database: str) -> str:
    """A product's database: `<database>.db` under MLSYS_HOME for the local profile,
    PostgreSQL (POSTGRES_DB, else `database`) for services."""
    platform = platform_settings()
    if platform.profile is Profile.services:
        postgres = postgres_settings()
        require_secret("POSTGRES_PASSWORD", postgres.password)
        return postgres.url(database)
    platform.home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(platform.home / f'{database}.db').resolve()}"


def mlflow_tracking_uri() -> str:
    settings = mlflow_settings()
    configured = settings.tracking_uri
    if configured:
        if configured.startswith(("http://", "https://")):  # a server answers only its users
            require_secret("MLFLOW_TRACKING_PASSWORD", settings.tracking_password)
        return configured
    home = platform_settings().home
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(home / 'mlflow.db').resolve()}"
