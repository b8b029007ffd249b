"""The no-animal classifier's server under load, in one run: photos judged per second in
batches of 32 (four clients at once) and the latency of one photo at a time (one client),
over HTTP to `python -m mlsys.violation_detection serve`.

The model served is the one `train` fits by default, fitted here on the training photos
of the split (the bench measures its speed, not its accuracy); the photos judged are the
dataset's.
"""

import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.helpers.http import wait_for_url
from tests.helpers.paths import ROOT

BATCH, REQUESTS, SINGLE = 32, 40, 200


def _register(env: dict) -> None:
    """Run in the bench's environment: the default classifier as the champion."""
    code = (
        "from pathlib import Path\n"
        "import mlflow\n"
        "from mlsys.aianimals.photos import load_photos, split\n"
        "from mlsys.common.tracking import CHAMPION, configure_mlflow\n"
        "from mlsys.violation_detection.tracking import EXPERIMENT, MODEL_NAME, THRESHOLD_TAG,"
        " log_model\n"
        "from mlsys.violation_detection.train import ClassifierParams, train_classifier\n"
        "photos = load_photos(Path('dataset/images'))\n"
        "part = split(photos.labels, 0).train\n"
        "trained = train_classifier(photos.images[part], photos.labels[part], ClassifierParams())\n"
        "configure_mlflow(EXPERIMENT)\n"
        "with mlflow.start_run():\n"
        "    logged = log_model(trained.model)\n"
        "v = str(logged.registered_model_version)\n"
        "client = mlflow.MlflowClient()\n"
        "client.set_model_version_tag(MODEL_NAME, v, THRESHOLD_TAG, '0.5')\n"
        "client.set_registered_model_alias(MODEL_NAME, CHAMPION, v)\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True)


def moderation(work: Path) -> dict:
    env = os.environ | {
        "MLSYS_PROFILE": "local",
        "MLSYS_HOME": str(work / "moderation-home"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    _register(env)
    photos = sorted((ROOT / "dataset/images").glob("*/*.png"))
    port = 18100 + os.getpid() % 1000
    server = subprocess.Popen(
        [sys.executable, "-m", "mlsys.violation_detection", "serve", "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_url(f"{base}/health/ready", timeout=120)
        with httpx.Client(base_url=base, timeout=60) as client:

            def judge(files: list[Path]) -> float:
                start = time.perf_counter()
                answer = client.post(
                    "/v1/predict", files=[("photos", (p.name, p.read_bytes())) for p in files]
                )
                answer.raise_for_status()
                return time.perf_counter() - start

            for i in range(5):  # warm up: the model's first calls, the connection
                judge(photos[i : i + 1])
                judge(photos[:BATCH])
            batches = [photos[(i * BATCH) % 1600 :][:BATCH] for i in range(REQUESTS)]
            start = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(judge, batches))
            batched = REQUESTS * BATCH / (time.perf_counter() - start)
            single = sorted(judge([photos[i % len(photos)]]) for i in range(SINGLE))
        return {
            "batch_size": BATCH,
            "batched_photos_per_second": round(batched, 1),
            "single_photo_p50_ms": round(statistics.median(single) * 1000, 2),
            "single_photo_p99_ms": round(single[int(len(single) * 0.99) - 1] * 1000, 2),
            "single_requests": SINGLE,
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
