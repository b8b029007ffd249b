"""What an outsider or a logged-in user sends that a route must never see: bodies over
their limit (refused before they are read, with or without a Content-Length), uploads
without a valid token (refused before the upload is read), validation errors that would
echo the input, and photos that are something else under PNG magic bytes."""

import io
import socket
import time

import pytest
from PIL import Image

from mlsys.api.guards import JSON_BODY_BYTES, UPLOAD_BODY_BYTES
from tests.helpers.aianimals import PNG, TINY_PNG, palette_png_without_its_palette
from tests.helpers.http import login

FORM = {"name": "x", "description": "y", "animal_category_id": "2", "animal_subcategory_id": "30"}


def test_a_json_body_over_the_limit_is_refused_unread_and_not_echoed(api):
    secret = "s3cret-" + "x" * JSON_BODY_BYTES
    response = api.post("/v0/user/login", json={"handle_name": "dog_leigh", "password": secret})
    assert response.status_code == 413
    assert "s3cret" not in response.text and response.headers["connection"] == "close"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_streamed_body_without_length_is_cut_at_the_limit(api):
    def chunks():
        for _ in range(JSON_BODY_BYTES // 1024 + 8):
            yield b" " * 1024  # 72 KiB of whitespace: valid JSON padding, never a length

    response = api.post(
        "/v0/animal/search",
        content=chunks(),
        headers={**login(api), "content-type": "application/json"},
    )
    assert response.status_code == 413


def test_an_upload_without_a_valid_token_is_refused_before_it_is_read(api):
    """Headers announcing a 1 MiB upload, and no byte of it: the 401 comes at once."""
    host, port = api.base_url.host, api.base_url.port
    with socket.create_connection((host, port), timeout=10) as raw:
        raw.sendall(
            b"POST /v0/animal HTTP/1.1\r\nHost: api\r\ntoken: forged\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 1048576\r\n\r\n--b\r\n"
        )
        started = time.monotonic()
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 401") and time.monotonic() - started < 5
    assert b"log in first" in answer


def test_an_upload_over_the_photo_limit_is_refused_even_with_a_token(api):
    photo = PNG + b"\0" * UPLOAD_BODY_BYTES
    response = api.post(
        "/v0/animal", data=FORM, files={"photo": ("p.png", photo)}, headers=login(api)
    )
    assert response.status_code == 413


def test_validation_errors_say_where_and_why_but_not_the_input(api):
    response = api.post(
        "/v0/user/login", json={"handle_name": "dog_leigh", "password": ["hunter2-secret"]}
    )
    assert response.status_code == 422
    assert "hunter2" not in response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "password"] and set(error) == {"type", "loc", "msg"}


def png(width=32, height=32, color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "photo",
    [
        b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>",  # magic bytes, then HTML
        b"\xff\xd8\xff<svg onload=alert(1)>",
        png()[:40],  # a truncated image
    ],
    ids=["png-magic-html", "jpeg-magic-svg", "truncated-png"],
)
def test_what_only_starts_like_an_image_is_refused(api, aianimals_home, photo):
    response = api.post(
        "/v0/animal", data=FORM, files={"photo": ("p.png", photo)}, headers=login(api)
    )
    assert response.status_code == 415
    uploads = aianimals_home / "storage" / "uploads"
    assert not uploads.exists() or not any(uploads.rglob("*.*"))


def test_a_polyglot_is_stored_as_its_pixels_only(api):
    """A real PNG with HTML appended: accepted, but what is stored and served is the image
    encoded again, without the appended bytes."""
    photo = png() + b"<html><script>alert(1)</script></html>"
    token = login(api)
    response = api.post("/v0/animal", data=FORM, files={"photo": ("p.png", photo)}, headers=token)
    assert response.status_code == 201, response.text
    served = api.get(response.json()["photo_url"])
    assert b"<script>" not in served.content
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    with Image.open(io.BytesIO(served.content)) as image:
        assert image.size == (32, 32) and image.getpixel((0, 0)) == (200, 30, 30)


@pytest.mark.parametrize(
    ("photo", "says"),
    [
        (TINY_PNG, "sides of at least 32"),  # issue 32, item 3: the classifier cannot judge it
        (png(20, 400), "sides of at least 32"),
        (palette_png_without_its_palette(), "not a PNG or JPEG"),  # item 12: was a 500
        (png(6300, 6300), "at most 25,000,000 pixels"),  # item 10: refused on its header
    ],
    ids=["1x1", "20x400", "palette-without-plte", "6300x6300"],
)
def test_a_photo_no_model_can_judge_is_refused_at_upload(api, aianimals_home, photo, says):
    token = login(api)
    start = time.perf_counter()
    response = api.post("/v0/animal", data=FORM, files={"photo": ("p.png", photo)}, headers=token)
    assert response.status_code == 415 and says in response.json()["detail"]
    assert time.perf_counter() - start < 1.0  # nothing decoded past the header
    uploads = aianimals_home / "storage" / "uploads"
    assert not uploads.exists() or not any(uploads.rglob("*.*"))


def test_a_stored_photo_keeps_no_colour_profile(api):
    """Issue 32, item 15: re-encoded PNGs kept their ICC profile bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 20, 30)).save(
        buffer, format="PNG", icc_profile=b"profile-bytes-" * 20
    )
    token = login(api)
    response = api.post(
        "/v0/animal", data=FORM, files={"photo": ("p.png", buffer.getvalue())}, headers=token
    )
    assert response.status_code == 201, response.text
    served = api.get(response.json()["photo_url"]).content
    assert b"profile-bytes" not in served and b"iCCP" not in served


def test_the_web_client_is_never_framed_and_runs_only_its_own_scripts(api):
    """Issue 32, item 14: it sent no CSP and no X-Frame-Options (it rendered inside a
    foreign iframe); the token is kept per tab (sessionStorage), not in localStorage."""
    page = api.get("/app/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
    assert "unsafe-inline" not in policy and page.headers["x-frame-options"] == "DENY"
    script = api.get("/app/app.js").text
    assert "localStorage" not in script and "sessionStorage" in script
    assert "content-security-policy" not in api.get("/v0/health-check").headers
