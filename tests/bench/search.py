"""The search endpoint under load on uvicorn, in one run, and what the request metrics cost
the trivial route (the API against the same app without them).

Closed loop (wrk: each connection sends again once answered), the same routes of one API
server (uvicorn, `--api-workers` processes) each for the same duration at the same
concurrency: a cached search (one body: answered from the process's near copy of the Redis
entry, before FastAPI's dependency solving), uncached searches sorted by `score` and by
`learn_to_rank` (every body differs, so every request misses: the full-text query, and for
learn_to_rank the champion's reranking of 100 candidates), and a trivial JSON route
(/v0/health-check). Open loop (`tests.bench.open_loop`): the two uncached searches offered
at a fixed rate (100 requests/s), latency counted from when each request was due.

The services profile: PostgreSQL, Redis, RabbitMQ (a vhost of its own), the local search
engine (no Elasticsearch server runs here), a ranker trained on the generated logs
(`search features`, `search train-ranker`) and loaded by the API before it is measured.
The query is ねこ, which matches about half of the posts.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg
import redis

from tests.bench.open_loop import open_loop, post_json
from tests.helpers.http import wait_for_url
from tests.helpers.paths import ROOT
from tests.helpers.services import PG, rabbitmqctl

# wrk scripts: a POST with a JSON body; the uncached one makes every body unique.
CACHED = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"phrases": ["ねこ"], "sort_by": "score"}'
"""
UNCACHED = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- Each wrk thread counts in its own range: identical bodies in flight would be coalesced.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("first", threads * 100000000)
end
counter = 0
function init(args)
  counter = first
end
request = function()
  counter = counter + 1
  -- The seed only changes the cache key (the sorts measured ignore it): same work, no hit.
  local body = '{"phrases": ["ねこ"], "sort_by": "SORT", "seed": ' .. counter .. '}'
  return wrk.format(nil, nil, nil, body)
end
"""


def _uncached_body(sort_by: str, number: int) -> bytes:
    # The seed only changes the cache key (neither sort uses it): same work, no hit.
    return json.dumps({"phrases": ["ねこ"], "sort_by": sort_by, "seed": number}).encode()


def _wrk(url: str, token: str, script: str | None, connections: int, seconds: int) -> dict:
    command = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"token: {token}",
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script or "")
    if script:
        command += ["-s", lua.name]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    os.unlink(lua.name)
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def percentile(label: str) -> float:
        found = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not found:
            raise RuntimeError(f"no {label}th percentile in wrk's output:\n{output}")
        value, unit = found.groups()
        return round(float(value) * units[unit], 2)

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": percentile("50"),
        "p99_ms": percentile("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def _wait_for_the_ranker(base: str, token: str, timeout: float = 120) -> str:
    """The API loads the champion in the background: wait until it reranks."""
    deadline = time.monotonic() + timeout
    while True:
        request = urllib.request.Request(
            f"{base}/v0/animal/search?limit=1",
            data=_uncached_body("learn_to_rank", 0),
            headers={"Content-Type": "application/json", "token": token},
        )
        with urllib.request.urlopen(request) as response:
            ranking = response.headers["X-Ranking"]
        if ranking.startswith("learn_to_rank") or time.monotonic() > deadline:
            return ranking
        time.sleep(1)


def search_load(
    work: Path,
    workers: int,
    connections: int = 64,
    seconds: int = 15,
    posts: int = 10_000,
    rate: float = 100.0,
) -> dict:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    database = f"mlsys_bench_search_{uuid.uuid4().hex[:8]}"
    prefix = f"mlsys-bench:{uuid.uuid4().hex[:8]}:"
    vhost = f"mlsys-bench-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    env = os.environ | {
        "RABBITMQ_VHOST": vhost,
        "MLSYS_PROFILE": "services",
        "MLSYS_HOME": str(work / "search-home"),
        "POSTGRES_HOST": PG["host"],
        "POSTGRES_DB": database,
        "REDIS_KEY_PREFIX": prefix,
        "SEARCH_ENGINE": "local",
        "AUTH_HASH_MEMORY_KIB": "1024",  # load speed only: login is not what is measured
        "AUTH_HASH_TIME_COST": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    env.pop("MLFLOW_TRACKING_URI", None)  # the ranker's registry: a file in the home
    port = 18000 + os.getpid() % 1000

    def cli(*args: str) -> None:
        subprocess.run([sys.executable, "-m", *args], env=env, cwd=ROOT, check=True)

    server = bare = None
    try:
        generated = work / "aianimals"
        cli("mlsys.batch", "generate", "--output", str(generated), "--posts", str(posts))
        cli("mlsys.batch", "initial-load", "--generated", str(generated))
        cli("mlsys.batch", "relay")
        cli("mlsys.batch", "search-index", "--idle-seconds", "2")
        cli("mlsys.search", "features")
        cli("mlsys.search", "train-ranker")
        serve = ["serve", "--port", str(port), "--workers", str(workers)]
        server = subprocess.Popen(
            [sys.executable, "-m", "mlsys.api", *serve],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        wait_for_url(f"{base}/v0/health-check", timeout=60)
        login = urllib.request.Request(
            f"{base}/v0/user/login",
            data=json.dumps({"handle_name": "dog_leigh", "password": "password"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(login) as response:
            token = json.load(response)["token"]
        search = f"{base}/v0/animal/search?limit=20"
        # The same app without its request metrics, served alike: their overhead's baseline.
        bare = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "tests.bench.uninstrumented:create_app",
             "--port", str(port + 1), "--workers", str(workers), "--no-access-log",
             "--no-proxy-headers", "--no-server-header"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        bare_base = f"http://127.0.0.1:{port + 1}"
        wait_for_url(f"{bare_base}/v0/health-check", timeout=60)
        ranking = _wait_for_the_ranker(base, token)
        _wait_for_the_ranker(bare_base, token)
        by_score, by_ranker = (UNCACHED.replace("SORT", s) for s in ("score", "learn_to_rank"))
        for url in (search, f"{bare_base}/v0/animal/search?limit=20"):  # warmed up alike:
            _wrk(url, token, CACHED, connections, 3)  # caches, connections
            _wrk(url, token, by_ranker, connections, 3)  # every worker loads the index, model
        # The trivial route on both in turns, so that drift hits both; then the bare app goes.
        turns: dict[str, list[float]] = {"instrumented": [], "bare": []}
        for _ in range(3):
            for name, url in (("instrumented", base), ("bare", bare_base)):
                measured = _wrk(f"{url}/v0/health-check", token, None, connections, seconds)
                turns[name].append(measured["requests_per_second"])
        bare.terminate()
        bare.wait(timeout=30)
        instrumented, without = (sum(turns[n]) / len(turns[n]) for n in ("instrumented", "bare"))

        def offered(sort_by: str) -> dict:
            path, host = "/v0/animal/search?limit=20", f"127.0.0.1:{port}"
            return open_loop(
                "127.0.0.1",
                port,
                lambda n: post_json(path, host, {"token": token}, _uncached_body(sort_by, n)),
                rate=rate,
                seconds=seconds,
            )

        results = {
            "posts": posts,
            "api_workers": workers,
            "connections": connections,
            "seconds_each": seconds,
            "ranking": ranking,
            "trivial": _wrk(f"{base}/v0/health-check", token, None, connections, seconds),
            "cached_search": _wrk(search, token, CACHED, connections, seconds),
            "uncached_search": _wrk(search, token, by_score, connections, seconds),
            "uncached_learn_to_rank": _wrk(search, token, by_ranker, connections, seconds),
            "open_loop_uncached_search": offered("score"),
            "open_loop_uncached_learn_to_rank": offered("learn_to_rank"),
        }
        results["request_metrics"] = {
            "trivial_requests_per_second": turns,
            "overhead": round(1 - instrumented / without, 4),  # goal <= 0.05
        }
        trivial = results["trivial"]["requests_per_second"]
        results["cached_vs_trivial"] = round(
            results["cached_search"]["requests_per_second"] / trivial, 2
        )
        results["cached_vs_uncached"] = round(
            results["cached_search"]["requests_per_second"]
            / results["uncached_search"]["requests_per_second"],
            2,
        )
        return results
    finally:
        for process in (server, bare):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
        client = redis.Redis()
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        rabbitmqctl("delete_vhost", vhost)
