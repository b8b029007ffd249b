import pytest

from mlsys.common.settings import (
    PostgresSettings,
    Profile,
    database_url,
    mlflow_tracking_uri,
    platform_settings,
)


def test_local_profile_is_the_default(local_home, monkeypatch):
    monkeypatch.delenv("MLSYS_PROFILE")
    assert platform_settings().profile is Profile.local
    # one database per product: a file each under MLSYS_HOME
    assert database_url("beverage") == f"sqlite:///{(local_home / 'beverage.db').resolve()}"
    assert database_url("aianimals") == f"sqlite:///{(local_home / 'aianimals.db').resolve()}"
    assert mlflow_tracking_uri() == f"sqlite:///{(local_home / 'mlflow.db').resolve()}"


def test_services_profile_reads_the_shared_variable_names(monkeypatch):
    monkeypatch.setenv("MLSYS_PROFILE", "services")
    monkeypatch.setenv("POSTGRES_HOST", "db.data.svc")
    monkeypatch.setenv("POSTGRES_PORT", "6543")
    monkeypatch.setenv("POSTGRES_USER", "forecaster")
    monkeypatch.setenv("POSTGRES_PASSWORD", "s3cret")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.mlflow.svc:5000")
    # without POSTGRES_DB, each product's database is named after it
    assert (
        database_url("beverage")
        == "postgresql+psycopg://forecaster:s3cret@db.data.svc:6543/beverage"
    )
    monkeypatch.setenv("POSTGRES_DB", "forecasts")
    assert database_url("beverage").endswith("@db.data.svc:6543/forecasts")
    assert mlflow_tracking_uri() == "http://mlflow.mlflow.svc:5000"


def test_password_is_not_shown_in_settings_repr(monkeypatch):
    monkeypatch.setenv("POSTGRES_PASSWORD", "s3cret")
    assert "s3cret" not in repr(PostgresSettings())


def test_outside_development_an_empty_database_password_is_refused(monkeypatch):
    monkeypatch.setenv("MLSYS_PROFILE", "services")
    monkeypatch.setenv("MLSYS_ENVIRONMENT", "production")
    monkeypatch.delenv("POSTGRES_PASSWORD", raising=False)
    with pytest.raises(RuntimeError, match="POSTGRES_PASSWORD is empty"):
        database_url("beverage")
    monkeypatch.setenv("POSTGRES_PASSWORD", "s3cret")
    assert database_url("beverage").startswith("postgresql+psycopg://postgres:s3cret@")


def test_outside_development_an_open_redis_is_refused(monkeypatch):
    from mlsys.common.settings import RedisSettings

    monkeypatch.setenv("MLSYS_ENVIRONMENT", "production")
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    with pytest.raises(RuntimeError, match="REDIS_PASSWORD is empty"):
        RedisSettings().url()
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
    assert RedisSettings().url() == "redis://:s3cret@127.0.0.1:6379/0"


def test_unset_environment_means_production(monkeypatch):
    """A deployment that forgot MLSYS_ENVIRONMENT refuses to run on empty secrets."""
    monkeypatch.delenv("MLSYS_ENVIRONMENT", raising=False)
    monkeypatch.delenv("POSTGRES_PASSWORD", raising=False)
    monkeypatch.setenv("MLSYS_PROFILE", "services")
    assert platform_settings().environment == "production"
    with pytest.raises(RuntimeError, match="POSTGRES_PASSWORD is empty"):
        database_url("beverage")


def test_a_signing_key_needs_32_bytes(monkeypatch):
    from mlsys.aianimals.settings import auth_settings

    monkeypatch.setenv("MLSYS_ENVIRONMENT", "production")
    monkeypatch.delenv("AUTH_SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="AUTH_SECRET_KEY is empty"):
        auth_settings()
    for short in ("k", "x" * 31, "é" * 15):  # bytes count, not characters (15 x 2 = 30)
        monkeypatch.setenv("AUTH_SECRET_KEY", short)
        with pytest.raises(RuntimeError, match="needs at least 32"):
            auth_settings()
    monkeypatch.setenv("AUTH_SECRET_KEY", "é" * 16)
    assert auth_settings().secret_key.get_secret_value() == "é" * 16
    # Development too: a key that is set is a real one, whatever the environment.
    monkeypatch.setenv("MLSYS_ENVIRONMENT", "development")
    monkeypatch.setenv("AUTH_SECRET_KEY", "k")
    with pytest.raises(RuntimeError, match="needs at least 32"):
        auth_settings()
