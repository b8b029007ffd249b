"""The AIAnimals services profile under mixed load while its cache, then its broker, then
its classifier go away and come back (issue 10's soak, extended by issue 32).

64 connections for 130 s mix logins, searches, likes and unlikes, and posts with a photo,
through the A/B test proxy in front of the API (uvicorn, `--api-workers`), with the outbox
relay, the search-index consumer, the classifier server and the detection consumer
running, each component as its own PostgreSQL role. One more client guesses one account's
password all along. Mid-run a private Redis is stopped (t=15 s) and started again
(t=25 s), then this machine's RabbitMQ application is stopped (t=35 s, `rabbitmqctl
stop_app`) and started again (t=45 s), then the classifier server is stopped (t=55 s) for
60 s. The relay and the consumers run under a supervisor that restarts them when they
exit, as Kubernetes does.

Reported: the answers per action and status (a 5xx other than a documented 503 is a
failure), whether every post made is in the search index at the end (and how long that
took after the load stopped), whether every post made was judged and how long after the
classifier's return the last one was, logins refused with 429 to users who never failed
(must be none), dead letters, restarts, and the resident memory of each API worker at the
start, its peak, and at the end.
"""

import asyncio
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

from mlsys.aianimals.tables import NO_ANIMAL_VIOLATION_ID
from tests.helpers.aianimals import PNG
from tests.helpers.http import wait_for_url
from tests.helpers.paths import ROOT
from tests.helpers.services import (
    PG,
    create_database,
    create_roles,
    drop_database,
    free_port,
    rabbitmqctl,
)

PHRASES = ["ねこ", "いぬ", "猫", "イヌ", "かわいい", "ペルシャ", "柴犬", "ふわふわ", "散歩", "寝る"]
ACTIONS = ["search"] * 11 + ["like"] * 4 + ["post"] * 3 + ["login"] * 2
OUTAGES = [(15, "redis", "stop"), (25, "redis", "start"), (35, "rabbitmq", "stop"),
           (45, "rabbitmq", "start"), (55, "classifier", "stop"),
           (115, "classifier", "start")]  # fmt: skip
GUESSED = "soak_guessed"  # the account the guesser fails to log in to, never a load user


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _api_workers(pid: int) -> list[int]:
    """uvicorn's worker processes (not the master, nor multiprocessing's helpers)."""
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        pids = [int(child) for child in children.read().split()]
    workers = []
    for child in pids:
        with open(f"/proc/{child}/cmdline", "rb") as cmdline:
            if b"multiprocessing.resource_tracker" not in cmdline.read():
                workers.append(child)
    return workers


class Supervised:
    """A long-running command restarted whenever it exits (a Deployment's restarts)."""

    def __init__(self, command: list[str], env: dict, log: Path):
        self.command, self.env, self.log = command, env, log.open("w")
        self.restarts, self.stopping = 0, False
        self.process = self._start()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(
            self.command, env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )

    def _watch(self) -> None:
        while not self.stopping:
            if self.process.poll() is not None and not self.stopping:
                time.sleep(1)  # Kubernetes waits longer (back-off); a second is enough here
                self.restarts += 1
                self.process = self._start()
            time.sleep(0.2)

    def stop(self) -> None:
        self.stopping = True
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


async def _load(base: str, users: list[str], animals: list[str], seconds: int,
                connections: int, outage) -> dict:  # fmt: skip
    statuses: dict[str, Counter] = {action: Counter() for action in {*ACTIONS, "guess"}}
    errors: list[str] = []
    posted: list[str] = []
    # keep-alive shorter than the servers' (uvicorn's 5 s): no request is sent on a
    # connection the server is closing as idle.
    limits = httpx.Limits(
        max_connections=connections + 1,
        max_keepalive_connections=connections + 1,
        keepalive_expiry=2.0,
    )
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def login(handle: str) -> dict:
            answer = await client.post(
                "/v0/user/login", json={"handle_name": handle, "password": "password"}
            )
            statuses["login"][answer.status_code] += 1
            return {"token": answer.json()["token"]} if answer.status_code == 200 else {}

        async def worker(number: int) -> None:
            rng = random.Random(number)
            handle = users[number % len(users)]
            token = await login(handle)
            while time.monotonic() < deadline:
                action = rng.choice(ACTIONS)
                if action == "login":
                    token = await login(handle) or token
                    continue
                if action == "search":
                    body = {"phrases": [rng.choice(PHRASES)],
                            "sort_by": rng.choice(["score", "like", "created_at"])}  # fmt: skip
                    answer = await client.post("/v0/animal/search", json=body, headers=token)
                elif action == "like":
                    target = {"animal_id": rng.choice(animals)}
                    if rng.random() < 0.7:
                        answer = await client.post("/v0/like", json=target, headers=token)
                    else:
                        answer = await client.request(
                            "DELETE", "/v0/like", params=target, headers=token
                        )
                else:
                    name = f"soak{uuid.uuid4().hex[:12]}"
                    form = {"name": name, "description": "ねこがねています",
                            "animal_category_id": "2", "animal_subcategory_id": "30"}  # fmt: skip
                    files = {"photo": ("p.png", PNG, "image/png")}
                    answer = await client.post("/v0/animal", data=form, files=files, headers=token)
                    if answer.status_code == 201:
                        posted.append(answer.json()["id"])
                statuses[action][answer.status_code] += 1
                if answer.status_code >= 500:
                    errors.append(f"{action} {answer.status_code} {answer.text[:200]}")

        async def guesser() -> None:
            """Fails one account's logins all along: that account is locked, nobody else."""
            while time.monotonic() < deadline:
                answer = await client.post(
                    "/v0/user/login", json={"handle_name": GUESSED, "password": "a guess"}
                )
                statuses["guess"][answer.status_code] += 1
                await asyncio.sleep(0.5)

        started = time.monotonic()
        deadline = started + seconds
        outage_task = asyncio.create_task(outage(started))
        await asyncio.gather(guesser(), *(worker(n) for n in range(connections)))
        await outage_task
    return {
        "statuses": {action: dict(counts) for action, counts in statuses.items()},
        "requests": sum(sum(counts.values()) for counts in statuses.values()),
        "server_errors": errors[:20],
        "server_error_count": len(errors),
        "posted": posted,
    }


def soak(work: Path, workers: int, connections: int = 64, seconds: int = 130) -> dict:
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server is needed (`make services` installs it)")
    if seconds < OUTAGES[-1][0] + 5:
        raise SystemExit(f"the soak needs at least {OUTAGES[-1][0] + 5} s for its outages")
    database = create_database("mlsys_bench_soak")
    roles = create_roles(database, ["api", "batch", "violation_detection"])
    vhost = f"mlsys-bench-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    redis_port, api_port, proxy_port, classifier_port = (free_port() for _ in range(4))
    home = work / "soak-home"
    env = os.environ | {
        "MLSYS_PROFILE": "services",
        "MLSYS_ENVIRONMENT": "development",
        "MLSYS_HOME": str(home),
        "POSTGRES_HOST": PG["host"],
        "POSTGRES_DB": database,
        "REDIS_PORT": str(redis_port),
        "RABBITMQ_VHOST": vhost,
        "SEARCH_ENGINE": "local",
        "AUTH_HASH_MEMORY_KIB": "1024",  # the load is not about Argon2's cost
        "AUTH_HASH_TIME_COST": "1",
        # Every client is this machine: only the proxy's word tells them apart, as deployed.
        "AUTH_TRUSTED_PROXIES": "127.0.0.1",
        "VIOLATION_DETECTION_URL": f"http://127.0.0.1:{classifier_port}",
        "VIOLATION_DETECTION_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex,
        # The deployed retries: 1, 2, 4, 8, 16 s, then 30 s, 12 deliveries.
        "RABBITMQ_MAX_ATTEMPTS": "12",
        "RABBITMQ_RETRY_BASE_SECONDS": "1",
    }

    def redis_server() -> subprocess.Popen:
        return subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )

    def cli(role: str, *args: str) -> None:
        run_env = env | {"POSTGRES_USER": roles[role]}
        subprocess.run([sys.executable, "-m", *args], env=run_env, cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip

    def classifier_server() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "mlsys.violation_detection", "serve", "--port",
             str(classifier_port)], env=env, cwd=ROOT, stdout=classifier_log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    redis = {"process": redis_server()}  # replaced when it is started again
    classifier_log = (work / "classifier.log").open("w")
    api_log, proxy_log = (work / "api.log").open("w"), (work / "proxy.log").open("w")
    classifier: dict[str, subprocess.Popen | None] = {"process": None}
    server = proxy = relay = indexer = detector = None
    returned_at: datetime | None = None
    try:
        generated = work / "soak-generated"
        cli("batch", "mlsys.batch", "generate", "--output", str(generated), "--posts", "2000")
        cli("owner", "mlsys.batch", "migrate")
        cli("batch", "mlsys.batch", "initial-load", "--generated", str(generated))
        cli("batch", "mlsys.batch", "relay")
        cli("batch", "mlsys.batch", "search-index", "--idle-seconds", "2")
        # The seeded posts need no verdict for this run: the champion is the tiny untrained
        # classifier, with a threshold no photo reaches (no post leaves search), and the
        # detection consumer starts with the load.
        subprocess.run([sys.executable, "-c", "from tests.helpers.moderation import "
                        "register_tiny_classifier; register_tiny_classifier(1.0)"],
                       env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)  # fmt: skip
        with psycopg.connect(dbname=database, autocommit=True, **PG) as connection:
            connection.execute(
                "INSERT INTO violations (animal_id, violation_type_id, probability, threshold, "
                "model_version, is_violation, created_at) SELECT id, %s, 0, 1, 'seeded', "
                "false, now() FROM animals", (NO_ANIMAL_VIOLATION_ID,),
            )  # fmt: skip
            connection.execute(
                "UPDATE users SET handle_name = %s WHERE id = (SELECT id FROM users ORDER BY "
                "id DESC LIMIT 1)", (GUESSED,),
            )  # fmt: skip
        classifier["process"] = classifier_server()
        wait_for_url(f"http://127.0.0.1:{classifier_port}/health/ready", timeout=120,
                     process=classifier["process"])  # fmt: skip
        batch_env = env | {"POSTGRES_USER": roles["batch"]}
        relay = Supervised([sys.executable, "-m", "mlsys.batch", "relay", "--follow",
                            "--interval", "0.5"], batch_env, work / "relay.log")  # fmt: skip
        indexer = Supervised([sys.executable, "-m", "mlsys.batch", "search-index"], batch_env,
                             work / "search-index.log")  # fmt: skip
        detector = Supervised([sys.executable, "-m", "mlsys.violation_detection", "consume"],
                              env | {"POSTGRES_USER": roles["violation_detection"]},
                              work / "violation-detection.log")  # fmt: skip
        server = subprocess.Popen(
            [sys.executable, "-m", "mlsys.api", "serve", "--port", str(api_port),
             "--workers", str(workers)],
            env=env | {"POSTGRES_USER": roles["api"]}, cwd=ROOT,
            stdout=api_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        api = f"http://127.0.0.1:{api_port}"
        wait_for_url(f"{api}/v0/health-check/ready", timeout=60, process=server)
        proxy = subprocess.Popen(
            [sys.executable, "-m", "mlsys.ab_test_proxy", "serve", "--config",
             "infrastructure/ab_test_proxy/experiment.yaml", "--upstream", api,
             "--port", str(proxy_port)],
            env=env, cwd=ROOT, stdout=proxy_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{proxy_port}"  # the app's way in
        wait_for_url(f"{base}/ab/health", timeout=60, process=proxy)
        time.sleep(2)  # the workers are forked after the master answers
        api_pids = _api_workers(server.pid) or [server.pid]
        # Resident memory of each worker every 5 s: bounded means it levels off.
        memory: dict[int, list[float]] = {pid: [_rss_mib(pid)] for pid in api_pids}
        with psycopg.connect(dbname=database, autocommit=True, **PG) as connection:
            users = [row[0] for row in connection.execute(
                "SELECT handle_name FROM users WHERE NOT deactivated AND handle_name <> %s "
                "ORDER BY id LIMIT 64", (GUESSED,)
            )]  # fmt: skip
            animals = [row[0] for row in connection.execute(
                "SELECT id FROM animals WHERE NOT deactivated ORDER BY id LIMIT 500"
            )]  # fmt: skip
        timeline: list[str] = []

        async def sample_memory(started: float) -> None:
            while time.monotonic() - started < seconds:
                await asyncio.sleep(5)
                for pid in api_pids:
                    memory[pid].append(_rss_mib(pid))

        async def outage(started: float) -> None:
            nonlocal returned_at
            sampler = asyncio.create_task(sample_memory(started))
            for at, service, change in OUTAGES:
                while time.monotonic() - started < at:
                    await asyncio.sleep(0.2)
                if service == "classifier" and change == "stop":
                    stopping = classifier["process"]
                    stopping.terminate()
                    await asyncio.to_thread(stopping.wait, 30)
                elif service == "classifier":
                    classifier["process"] = classifier_server()
                    returned_at = datetime.now(UTC)
                elif service == "redis" and change == "stop":
                    redis["process"].terminate()
                    redis["process"].wait(timeout=30)
                elif service == "redis":
                    redis["process"] = redis_server()
                else:
                    await asyncio.to_thread(
                        rabbitmqctl, "stop_app" if change == "stop" else "start_app"
                    )
                timeline.append(f"{time.monotonic() - started:.1f}s {service} {change}")
            await sampler

        load = asyncio.run(_load(base, users, animals, seconds, connections, outage))
        # Every post made must reach the index: wait for the relay and the consumer.
        posted, waited, started = set(load.pop("posted")), 0.0, time.monotonic()
        missing = set(posted)
        while missing and waited < 180:
            with sqlite3.connect(home / "search.sqlite") as index:
                found = {row[0] for row in index.execute("SELECT id FROM animals")}
            missing = posted - found
            if missing:
                time.sleep(1)
            waited = time.monotonic() - started
        # Every post made must be judged: within a minute of the classifier's return.
        judged_at: dict[str, datetime] = {}
        deadline = time.monotonic() + 300
        while len(judged_at) < len(posted) and time.monotonic() < deadline:
            with psycopg.connect(dbname=database, autocommit=True, **PG) as connection:
                judged_at = dict(connection.execute(
                    "SELECT animal_id, min(created_at) FROM violations WHERE animal_id = "
                    "ANY(%s) GROUP BY animal_id", (list(posted),),
                ).fetchall())  # fmt: skip
            time.sleep(1)
        last_verdict = max(judged_at.values(), default=None)
        dead = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        dead_letters = sum(
            int(line.split()[1]) for line in dead.splitlines()
            if line.split() and line.split()[0].endswith(".dead")
        )  # fmt: skip
        documented = {503}
        undocumented = [e for e in load["server_errors"] if int(e.split()[1]) not in documented]
        return {
            "connections": connections,
            "seconds": seconds,
            "api_workers": workers,
            "timeline": timeline,
            **load,
            "undocumented_server_errors": len(undocumented),
            "posts_made": len(posted),
            "posts_indexed": len(posted - missing),
            "posts_missing": sorted(missing)[:20],
            "indexed_within_seconds_after_the_load": round(waited, 1),
            "posts_judged": len(judged_at),
            "last_verdict_seconds_after_the_classifier_returned": (
                round((last_verdict - returned_at).total_seconds(), 1)
                if last_verdict and returned_at
                else None
            ),
            "logins_locked_out_of_users_who_never_failed": load["statuses"]["login"].get(429, 0),
            "guesses_refused_429": load["statuses"]["guess"].get(429, 0),
            "dead_letters": dead_letters,
            "restarts": {
                "relay": relay.restarts,
                "search_index": indexer.restarts,
                "violation_detection": detector.restarts,
            },
            "api_worker_rss_mib_every_5s": list(memory.values()),
            "api_worker_peak_mib": max(max(series) for series in memory.values()),
        }
    finally:
        for supervised in (relay, indexer, detector):
            if supervised is not None:
                supervised.stop()
        for process in (proxy, server, classifier["process"]):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
        for log in (classifier_log, api_log, proxy_log):
            log.close()
        rabbitmqctl("start_app")  # whatever happened, the machine's broker runs again
        rabbitmqctl("delete_vhost", vhost)
        redis["process"].terminate()
        drop_database(database)


if __name__ == "__main__":  # python -m tests.bench.soak
    import tempfile

    work = os.environ.get("SOAK_WORK")  # keep the logs there
    if work:
        print(json.dumps(soak(Path(work), os.cpu_count() or 1), indent=2))
    else:
        with tempfile.TemporaryDirectory(prefix="mlsys-soak-") as tmp:
            print(json.dumps(soak(Path(tmp), os.cpu_count() or 1), indent=2))
