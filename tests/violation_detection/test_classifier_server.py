"""The classifier's server: one photo or a batch judged by the champion with the threshold
registered with it, bad photos refused with a 4xx that says why, 503 until a model is
loaded, and the next champion served once the alias moves."""

import io
import socket

import httpx
import pytest
from PIL import Image

from tests.helpers.http import ApiServer
from tests.helpers.paths import ROOT

PHOTO = ROOT / "dataset/images" / "animal/animals__2_dead_frogs_lumen_desig_01.png"


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A local MLflow store of this test's own; register(threshold) adds a version of a
    tiny (untrained) classifier and makes it the champion."""
    monkeypatch.setenv("MLSYS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLSYS_PROFILE", "local")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from tests.helpers.moderation import register_tiny_classifier

    def register(threshold: float) -> int:
        return register_tiny_classifier(threshold)[0]

    return register


def png(size=(128, 128), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_photos_are_judged_with_the_champions_threshold_and_bad_ones_refused(registry):
    from mlsys.violation_detection.serve import (
        MAX_BATCH,
        MAX_PHOTO_BYTES,
        champion_classifier,
        create_app,
    )
    from mlsys.violation_detection.tracking import MODEL_NAME

    champion = champion_classifier()
    with (
        ApiServer(create_app(champion)) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        assert client.post("/v1/predict", files={"photos": ("a.png", png())}).status_code == 503
        assert client.get("/health/ready").status_code == 503
        assert client.get("/health").status_code == 200

        registry(threshold=0.0)  # every photo is a violation at 0
        champion.refresh()
        assert client.get("/health/ready").json()["model"] == "aianimals_no_animal_violation/1"
        one = client.post("/v1/predict", files={"photos": ("frog.png", PHOTO.read_bytes())})
        assert one.status_code == 200, one.text
        body = one.json()
        assert body["model"] == "aianimals_no_animal_violation/1" and body["threshold"] == 0.0
        [prediction] = body["predictions"]
        assert 0.0 <= prediction["no_animal"] <= 1.0 and prediction["violation"] is True
        # The SavedModel served scores as the Keras model does: the augmentation layers
        # stay off (model.export() left them on and every photo was flipped and zoomed).
        from mlsys.aianimals.photos import decoded
        from mlsys.violation_detection.tracking import load_version
        from mlsys.violation_detection.train import no_animal_scores

        keras_model, _ = load_version(1)
        expected = no_animal_scores(keras_model, decoded(PHOTO)[None])[0]
        assert prediction["no_animal"] == pytest.approx(float(expected), abs=1e-6)
        # A batch, in order, any size of photo resized to what the model takes.
        batch = [("photos", (f"{i}.png", png(size=(64 + i, 200)))) for i in range(3)]
        assert len(client.post("/v1/predict", files=batch).json()["predictions"]) == 3

        refused = {
            "not an image": ([("photos", ("x.png", b"GIF89a not really"))], 415),
            "too small": ([("photos", ("tiny.png", png(size=(16, 16))))], 422),
            "too large": ([("photos", ("big.png", b"\x89PNG" + b"0" * MAX_PHOTO_BYTES))], 413),
            "too many": ([("photos", (f"{i}.png", png())) for i in range(MAX_BATCH + 1)], 413),
        }
        for why, (files, expected) in refused.items():
            answer = client.post("/v1/predict", files=files)
            assert answer.status_code == expected, why
            assert answer.json()["detail"], why
        assert (
            "tiny.png: 16x16 pixels"
            in client.post("/v1/predict", files=refused["too small"][0]).json()["detail"]
        )
        metrics = client.get("/metrics").text
        assert 'violation_refused_photos_total{reason="not_an_image"}' in metrics
        assert 'violation_predictions_total{outcome="violation"}' in metrics
        assert 'http_requests_total{handler="/v1/predict",method="POST",status="4xx"}' in metrics
        assert f'model_served_version{{model="{MODEL_NAME}"}}' in metrics


def test_the_next_champion_is_served_once_the_alias_moves(registry):
    from mlsys.violation_detection.serve import champion_classifier

    champion = champion_classifier()
    registry(threshold=0.2)
    champion.refresh()
    assert (champion.loaded.version, champion.loaded.threshold) == (1, 0.2)
    first = champion.loaded
    champion.refresh()
    assert champion.loaded is first  # the same version is not loaded again
    registry(threshold=0.7)
    champion.refresh()
    assert (champion.loaded.version, champion.loaded.threshold) == (2, 0.7)


def test_only_callers_with_the_token_are_judged_and_no_body_over_the_limit_is_read(
    registry, monkeypatch
):
    """Issue 32, item 10: the server had no authentication and read a whole 300 MB part
    before its 413. A caller without the token is refused before its body is read, and a
    body over MAX_REQUEST_BYTES is refused by its length or as it streams in."""
    from mlsys.violation_detection.detect import Classifier
    from mlsys.violation_detection.serve import MAX_REQUEST_BYTES, champion_classifier, create_app

    token = "t" * 48
    monkeypatch.setenv("VIOLATION_DETECTION_TOKEN", token)
    registry(threshold=0.5)
    champion = champion_classifier()
    champion.refresh()
    sent = []

    def streamed(chunks: int, size: int = 1024 * 1024):
        """A multipart body of one part that never ends, without a Content-Length."""
        yield b'--b\r\nContent-Disposition: form-data; name="photos"; filename="x.png"\r\n\r\n'
        for _ in range(chunks):
            sent.append(size)
            yield b"0" * size

    with ApiServer(create_app(champion)) as server, httpx.Client(base_url=server.url) as client:
        photo = {"photos": ("frog.png", PHOTO.read_bytes())}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            refused = client.post("/v1/predict", files=photo, headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["www-authenticate"] == "Bearer"
        twice = [("Authorization", f"Bearer {token}")] * 2
        assert client.post("/v1/predict", files=photo, headers=twice).status_code == 401
        # A stranger's 300 MB: answered before it is read (the connection then closes).
        try:
            answer = client.post("/v1/predict", content=streamed(300), timeout=10)
            assert answer.status_code == 401
        except httpx.TransportError:
            pass  # closed while the rest was being sent: refused all the same
        print(f"sent {sum(sent) / 2**20:.0f} MiB of a stranger's 300 MiB")
        assert sum(sent) < 100 * 1024 * 1024
        # The detection consumer's client sends the token; health and metrics stay open.
        monkeypatch.setenv("VIOLATION_DETECTION_URL", server.url)
        classifier = Classifier.from_settings()
        with classifier.client:
            judged = classifier.judge({"a": PHOTO.read_bytes()})
        assert judged.model == "aianimals_no_animal_violation/1"
        assert client.get("/health/ready").status_code == 200
        assert client.get("/metrics").status_code == 200
        # A declared length over the limit: answered at once, nothing sent after the headers.
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(
                f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                f"{token}\r\nContent-Length: {MAX_REQUEST_BYTES + 1}\r\n\r\n".encode()
            )
            assert raw.recv(64).startswith(b"HTTP/1.1 413")
        # A body without a length: answered once it passes the limit, the rest never sent.
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                        f"{token}\r\nTransfer-Encoding: chunked\r\nContent-Type: "
                        "multipart/form-data; boundary=b\r\n\r\n".encode())  # fmt: skip
            for chunk in streamed(MAX_REQUEST_BYTES // 2**20 + 2):
                raw.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            assert raw.recv(64).startswith(b"HTTP/1.1 413")


def test_the_consumer_splits_photos_into_requests_the_server_takes():
    from mlsys.violation_detection.detect import PART_OVERHEAD, requests
    from mlsys.violation_detection.serve import MAX_BATCH, MAX_PHOTO_BYTES, MAX_REQUEST_BYTES

    big = {f"big{i}": b"0" * MAX_PHOTO_BYTES for i in range(20)}  # 100 MiB in all
    small = {f"small{i}": b"0" * 100 for i in range(150)}
    split = requests(big | small)
    assert [photo for request in split for photo in request] == [*big, *small]  # in order
    for request in split:
        assert len(request) <= MAX_BATCH
        assert sum(len(data) + PART_OVERHEAD for data in request.values()) <= MAX_REQUEST_BYTES
    # 6 big a request (32 MiB), then 2 big with 62 small (64 photos), then 64 and 24 small.
    assert [len(request) for request in split] == [6, 6, 6, 64, 64, 24]
