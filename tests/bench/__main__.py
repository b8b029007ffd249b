"""`make bench`: registration throughput, the forecasting pipeline's cost at scale, the
AIAnimals search endpoint under concurrent load (cached, uncached, trivial route), the
AIAnimals soak (mixed load while Redis and then RabbitMQ go away and come back),
learning to rank at the demo's size (its evaluation tables, reranking's cost), and the
no-animal classifier's server (photos per second in batches, one photo's latency).

Everything is measured in one run on this machine and reported as figures and ratios;
nothing here asserts absolute times. Results: stdout and .mlsys/bench/*.json.

  python -m tests.bench [--sizes 50x50,100x100] [--years 4] [--rows 1000000]
                        [--suites registration,pipeline,search,soak,ranking,moderation,image-index]
                        [--api-workers N]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import psycopg

from mlsys.beverage.tables import ItemSale
from mlsys.common.bulk import Staging, executemany_upsert
from mlsys.common.db import engine_for
from mlsys.common.settings import PostgresSettings
from mlsys.data_registration.files import read_sales
from mlsys.data_registration.generate import GenerationSpec, generate
from mlsys.data_registration.register import master_ids, register
from tests.bench.image_index import image_index
from tests.bench.moderation import moderation
from tests.bench.ranking import ranking
from tests.bench.search import search_load
from tests.bench.soak import soak
from tests.helpers.paths import ROOT
from tests.helpers.services import PG

OUT = ROOT / ".mlsys" / "bench"


def admin(sql: str) -> None:
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as connection:
        connection.execute(sql)


def fresh_database(name: str) -> str:
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{name}"')
    return name


def _high_water_mib(pid: int) -> int:
    """The process's own peak resident memory (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return 0


def measure(command: list[str], env: dict) -> dict:
    """Wall time and peak memory of one child process.

    Peak memory is sampled from /proc (VmHWM never decreases, so sampling misses at most
    the last 0.2 s of growth); rusage would count the memory of this parent process too.
    """
    start = time.monotonic()
    child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, _high_water_mib(child.pid))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.2)
    if child.wait() != 0:
        raise RuntimeError(f"{command} failed with status {child.returncode}")
    return {"seconds": round(time.monotonic() - start, 1), "peak_mib": peak}


def registration_throughput(rows: int, work: Path) -> dict:
    """The same validated rows written by COPY (staging + merge) and by executemany."""
    days = max(1, rows // 10_000)
    spec = GenerationSpec(
        stores=100,
        items=100,
        start=date(2021, 1, 4),
        end=date(2021, 1, 3) + pd.Timedelta(days=days).to_pytimedelta(),
        seed=1,
    )
    sales_path = generate(spec, work / "throughput", ROOT / "dataset" / "beverage")
    database = fresh_database("mlsys_bench_registration")
    url = PostgresSettings(**{k: v for k, v in PG.items() if k != "port"}).url(database)
    engine = engine_for(url)
    try:
        register(master_dir=sales_path.parent, sales_path=None, engine=engine, show_progress=False)
        with engine.connect() as connection:
            store_ids, item_ids = master_ids(connection)
        frame = pd.concat(read_sales(sales_path, store_ids, item_ids)).assign(is_generated=True)
        columns = list(frame.columns)

        start = time.perf_counter()
        with engine.begin() as connection:
            staging = Staging(connection, ItemSale, columns)
            for begin in range(0, len(frame), 200_000):
                staging.add(frame.iloc[begin : begin + 200_000])
            written = staging.merge()
        copy_seconds = time.perf_counter() - start
        assert written == len(frame)

        sample = frame.iloc[: min(len(frame), 100_000)]
        with engine.begin() as connection:
            connection.exec_driver_sql("TRUNCATE item_sales")
        start = time.perf_counter()
        with engine.begin() as connection:
            executemany_upsert(connection, ItemSale, sample)
        executemany_seconds = time.perf_counter() - start

        with engine.begin() as connection:
            connection.exec_driver_sql("TRUNCATE item_sales")
        start = time.perf_counter()
        register(master_dir=None, sales_path=sales_path, engine=engine, show_progress=False)
        end_to_end_seconds = time.perf_counter() - start
    finally:
        engine.dispose()
        admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    copy_rate = len(frame) / copy_seconds
    executemany_rate = len(sample) / executemany_seconds
    return {
        "rows": len(frame),
        "copy_rows_per_s": round(copy_rate),
        "executemany_rows": len(sample),
        "executemany_rows_per_s": round(executemany_rate),
        "copy_vs_executemany": round(copy_rate / executemany_rate, 1),
        "register_end_to_end_rows_per_s": round(len(frame) / end_to_end_seconds),
        "goal": "copy >= 300,000 rows/s and >= 10x executemany",
    }


def pipeline(stores: int, items: int, years: int, work: Path) -> dict:
    """generate, then register -> train (with its backtest) -> predict, each its own process."""
    spec = GenerationSpec(
        stores=stores, items=items, start=date(2022 - years, 1, 3), end=date(2021, 12, 26), seed=0
    )
    start = time.monotonic()
    sales_path = generate(spec, work / f"scale_{stores}x{items}", ROOT / "dataset" / "beverage")
    generate_seconds = round(time.monotonic() - start, 1)
    rows = sum(1 for _ in sales_path.open()) - 1
    database = fresh_database(f"mlsys_bench_{stores}x{items}")
    env = os.environ | {
        "MLSYS_PROFILE": "services",
        "POSTGRES_DB": database,
        "POSTGRES_HOST": PG["host"],
        "POSTGRES_USER": PG["user"],
        "MLSYS_HOME": str(work / f"home_{stores}x{items}"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    python = [sys.executable, "-m"]
    try:
        stages = {
            "register": measure(
                [
                    *python,
                    "mlsys.data_registration",
                    "register",
                    "--master-dir",
                    str(sales_path.parent),
                    "--sales",
                    str(sales_path),
                ],
                env,
            ),
            "train": measure([*python, "mlsys.ml", "train", "data.include_generated=true"], env),
            "predict": measure([*python, "mlsys.ml", "predict"], env),
        }
    finally:
        admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return {
        "stores": stores,
        "items": items,
        "years": years,
        "rows": rows,
        "generate_seconds": generate_seconds,
        "stages": stages,
        "pipeline_seconds": round(sum(s["seconds"] for s in stages.values()), 1),
        "peak_mib": max(s["peak_mib"] for s in stages.values()),
        "goal": "100x100x4 years: <= 600 s and <= 4096 MiB",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="50x50,100x100", help="stores x items, comma separated")
    parser.add_argument("--years", type=int, default=4)
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows for the registration throughput"
    )
    parser.add_argument(
        "--suites",
        default="registration,pipeline,search,soak,ranking,moderation,image-index",
        help="which to run, comma separated: registration, pipeline, search, soak, ranking, "
        "moderation, image-index",
    )
    parser.add_argument(
        "--api-workers",
        type=int,
        default=os.cpu_count(),
        help="uvicorn workers of the API under load (default: one per core, as the API "
        "would be run on this machine; a pod runs one)",
    )
    parser.add_argument(
        "--soak-seconds", type=int, default=130, help="how long the soak's load lasts"
    )
    args = parser.parse_args()
    suites = set(args.suites.split(","))

    OUT.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": {"cpus": os.cpu_count()},
        "started": datetime.now().isoformat(timespec="seconds"),
    }
    with tempfile.TemporaryDirectory(prefix="mlsys-bench-") as tmp:
        work = Path(tmp)
        if "registration" in suites:
            results["registration"] = registration_throughput(args.rows, work)
            print(json.dumps(results["registration"], indent=2), flush=True)
        results["pipeline"] = []
        for size in args.sizes.split(",") if "pipeline" in suites else []:
            stores, items = map(int, size.split("x"))
            results["pipeline"].append(pipeline(stores, items, args.years, work))
            print(json.dumps(results["pipeline"][-1], indent=2), flush=True)
        if "search" in suites:
            results["search"] = search_load(work, args.api_workers)
            print(json.dumps(results["search"], indent=2), flush=True)
        if "ranking" in suites:
            results["ranking"] = ranking(work)
            print(json.dumps(results["ranking"], indent=2), flush=True)
        if "moderation" in suites:
            results["moderation"] = moderation(work)
            print(json.dumps(results["moderation"], indent=2), flush=True)
        if "image-index" in suites:
            results["image_index"] = image_index()
            print(json.dumps(results["image_index"], indent=2), flush=True)
        if "soak" in suites:
            results["soak"] = soak(work, args.api_workers, seconds=args.soak_seconds)
            print(json.dumps(results["soak"], indent=2), flush=True)
    if len(results["pipeline"]) >= 2:
        small, large = results["pipeline"][0], results["pipeline"][-1]
        results["growth"] = {
            "rows": round(large["rows"] / small["rows"], 2),
            "seconds": round(large["pipeline_seconds"] / small["pipeline_seconds"], 2),
            "peak_memory": round(large["peak_mib"] / small["peak_mib"], 2),
        }
        print("growth (largest / smallest):", json.dumps(results["growth"]))
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    for name in (f"bench-{stamp}.json", "latest.json"):
        (OUT / name).write_text(json.dumps(results, indent=2))
    print(f"wrote {OUT / 'latest.json'}")


if __name__ == "__main__":
    main()
