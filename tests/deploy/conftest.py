import pytest

from tests.helpers.manifests import copy_with_secrets


@pytest.fixture(scope="session")
def manifests(tmp_path_factory):
    """The manifests with the Secrets' env files written by `make secrets`."""
    return copy_with_secrets(tmp_path_factory.mktemp("manifests"))
