"""Every image that serves requests stays under 800 MB as built here (`BASES=debian`): what
its component does not import is not in it. The others are reported in docs/deployment.md."""

import pytest

from infrastructure.images import size_mb, tag
from tests.containers.conftest import built

pytestmark = pytest.mark.container

SERVING_LIMIT_MB = 800


@pytest.mark.parametrize(
    "name",
    [
        "api",
        "ab_test_proxy",
        "bi",
        "violation_detection",  # the classifier server
        "review_portal",
    ],
)
def test_serving_image_is_under_800_mb(name):
    reference = tag(name, *built())
    size = size_mb(reference)
    assert size is not None, f"{reference} is not built"
    assert size < SERVING_LIMIT_MB, f"{reference}: {size} MB"
