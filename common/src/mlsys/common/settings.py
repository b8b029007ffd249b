"""Settings per backing service, read from the environment (same names everywhere).

Nothing is read at import time: call the functions, so tests and CLIs can change the
environment first.
"""

from enum import StrEnum
from pathlib import Path

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


def platform_settings() -> PlatformSettings:
    return PlatformSettings()


def postgres_settings() -> PostgresSettings:
    return PostgresSettings()


def mlflow_settings() -> MlflowSettings:
    return MlflowSettings()


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
