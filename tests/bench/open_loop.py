"""An open-loop HTTP load: requests sent at a fixed rate whatever the answers, as users do.

wrk and hey wait for an answer before a connection sends again (closed loop), so a slow
server is offered less and its latency hides in the gaps (coordinated omission). Here the
i-th request is due at i / rate seconds; it goes out then on an idle keep-alive connection
(or a new one), and its latency counts from when it was due. Every body differs, so a
response cache cannot answer any of them. The client is a few hundred lines of asyncio
on raw sockets: at 100 requests/s it costs about 1% of a core, beside the server's two.
"""

import asyncio
import statistics
import time
from collections.abc import Callable


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> int:
        """Send a request, read the whole answer; its status."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(":", 1)[1])
            for line in lines[1:]
            if line.lower().startswith("content-length:")
        )
        await self.reader.readexactly(length)
        return status


async def _run(
    host: str,
    port: int,
    request_for: Callable[[int], bytes],
    rate: float,
    seconds: float,
    max_connections: int,
) -> dict:
    idle: list[_Connection] = []
    opened = 0
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failures = 0
    dropped = 0

    async def connect() -> _Connection:
        nonlocal opened
        opened += 1
        return _Connection(*await asyncio.open_connection(host, port))

    async def one(number: int, due: float) -> None:
        nonlocal failures
        reused = bool(idle)
        connection = idle.pop() if reused else await connect()
        try:
            try:
                status = await connection.exchange(request_for(number))
            except (ConnectionError, asyncio.IncompleteReadError):
                if not reused:
                    raise
                # The server closed it while idle (uvicorn: after 5 s), as HTTP allows:
                # what a client's pool does, send again on a new one.
                connection.writer.close()
                connection = await connect()
                status = await connection.exchange(request_for(number))
        except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
            failures += 1
            connection.writer.close()
            return
        latencies.append(time.perf_counter() - due)
        statuses[status] = statuses.get(status, 0) + 1
        idle.append(connection)

    tasks: set[asyncio.Task] = set()
    start = time.perf_counter()
    total = int(rate * seconds)
    for number in range(total):
        due = start + number / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= max_connections:  # the server has fallen this far behind
            dropped += 1
            continue
        task = asyncio.create_task(one(number, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    elapsed = time.perf_counter() - start
    for connection in idle:
        connection.writer.close()
    ordered = sorted(latencies)

    def percentile(fraction: float) -> float:
        if not ordered:
            return float("nan")
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000, 2)

    return {
        "offered_per_second": rate,
        "answered_per_second": round(len(latencies) / elapsed, 1),
        "requests": total,
        "p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else float("nan"),
        "p99_ms": percentile(0.99),
        "max_ms": percentile(1.0),
        "non_2xx": sum(n for status, n in statuses.items() if not 200 <= status < 300),
        "failed": failures,
        "not_sent": dropped,
        "connections": opened,
    }


def open_loop(
    url_host: str,
    port: int,
    request_for: Callable[[int], bytes],
    rate: float = 100.0,
    seconds: float = 20.0,
    max_connections: int = 256,
) -> dict:
    """Offer `rate` requests/s for `seconds`; request_for(i) is the i-th request's bytes."""
    return asyncio.run(_run(url_host, port, request_for, rate, seconds, max_connections))


def post_json(path: str, host: str, headers: dict[str, str], body: bytes) -> bytes:
    """An HTTP/1.1 keep-alive POST of a JSON body."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
