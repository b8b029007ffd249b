"""Waiting for a server, and the AIAnimals API served in-process over real HTTP."""

import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from mlsys.common.serving import UVICORN_OPTIONS
from tests.helpers.services import free_port


def wait_for_url(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Return once `url` answers 200; fail loudly at the deadline or if `process` exits."""
    deadline = time.monotonic() + timeout
    last_error: object = None
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
                last_error = f"status {response.status}"
        except urllib.error.HTTPError as error:  # an answer other than 200: close it
            error.close()
            last_error = error
        except OSError as error:
            last_error = error
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{url}: the server exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout:.0f} s: {last_error}")
        time.sleep(0.25)


class ApiServer:
    """The API (or another ASGI app) on uvicorn in a thread, spoken to over real HTTP."""

    def __init__(self, app=None):
        import uvicorn

        if app is None:
            from mlsys.api.app import create_app

            app = create_app()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, port=self.port, log_level="warning", **UVICORN_OPTIONS)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_):
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextmanager
def serving_api() -> Iterator:
    """The API of the current environment on uvicorn, and an HTTP client to it."""
    import httpx

    from mlsys.aianimals.cache import _in_process_cache
    from mlsys.aianimals.search import _index_for
    from mlsys.aianimals.storage import photo_store

    # One cache, index and photo store per environment, as in a fresh process.
    _in_process_cache.cache_clear()
    _index_for.cache_clear()
    photo_store.cache_clear()
    with ApiServer() as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client, server


def login(client, handle_name: str = "dog_leigh", password: str = "password") -> dict:
    response = client.post(
        "/v0/user/login", json={"handle_name": handle_name, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"token": response.json()["token"]}
