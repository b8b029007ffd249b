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


def mailed(address: str, folder=None, timeout: float = 30, count: int = 1):
    """The last mail to `address` (in any case) in a MAIL_URL=file:// folder (default: the
    development one, MLSYS_HOME/mail), once `count` mails to it have arrived."""
    import email
    import email.policy
    from pathlib import Path

    from mlsys.aianimals.settings import mail_settings

    folder = Path(folder) if folder else Path(mail_settings().url.get_secret_value()[7:])
    deadline = time.monotonic() + timeout
    while True:
        mails = [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
        ] if folder.is_dir() else []  # fmt: skip
        mine = [m for m in mails if str(m["To"]).lower() == address.lower()]
        if len(mine) >= count:
            return mine[-1]
        assert time.monotonic() < deadline, f"no mail to {address} in {folder} in {timeout} s"
        time.sleep(0.1)


def link_token(mail) -> str | None:
    """The token of the confirmation link in a sign-up's mail (None: a mail with no link)."""
    import re

    found = re.search(r"#verify=(\S+)", mail.get_content())
    return found.group(1) if found else None


def sign_up(client, user: dict, folder=None) -> dict:
    """Sign up as the web client does and confirm the address with the mailed link; the
    new user's public record. The account mailer must be running (in the API process in
    the local profile)."""
    pending = client.post("/v0/user", json=user)
    assert pending.status_code == 202, pending.text
    token = link_token(mailed(user["email_address"], folder))
    assert token, "the mail has no confirmation link"
    verified = client.post("/v0/user/verify", json={"token": token})
    assert verified.status_code == 201, verified.text
    return verified.json()
