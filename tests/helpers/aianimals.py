"""What the AIAnimals tests share: a tiny photo, searching and reading the cache counters."""

import io
import time

AIANIMALS_POSTS = 600  # the small seeded dataset the session fixtures generate and load

# A real 1x1 white PNG (Pillow decodes it; the API stores only what decodes).
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00"
    b"\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\r\xefF\xb8"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


def same_pixels(first: bytes, second: bytes) -> bool:
    from PIL import Image

    with Image.open(io.BytesIO(first)) as a, Image.open(io.BytesIO(second)) as b:
        return a.format == b.format and a.size == b.size and a.tobytes() == b.tobytes()


def search(api, token, body, **params):
    response = api.post("/v0/animal/search", json=body, headers=token, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def wait_until(condition, timeout=20):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def cache_count(api, result: str) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(f'search_cache_requests_total{{result="{result}"}}'):
            return float(line.split()[-1])
    return 0.0
