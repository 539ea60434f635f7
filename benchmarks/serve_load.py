"""Load test of `poetgen serve`: N concurrent clients on loopback for a bounded time, batched vs one-at-a-time.

It starts its own server per mode on 127.0.0.1 and stops it afterwards; it changes no model.

    python benchmarks/serve_load.py --model /tmp/x --clients 32 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx

from poetgen.batching import BatchOptions

MODES = {"batched": None, "one-at-a-time": 1}   # --max-batch per mode; None keeps the option given


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def health(url: str) -> dict:
    with urllib.request.urlopen(url + "/healthz", timeout=5) as answer:
        return json.load(answer)


def load_arguments(parser: argparse.ArgumentParser, seconds: float, warmup: float, max_seconds: float,
                   max_warmup: float, seconds_help: str) -> None:
    """The options every server load script shares: the server's settings and the load's size."""
    parser.add_argument("--model", default=None, help="bundle directory (default: the shipped model)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=seconds, help=seconds_help)
    parser.add_argument("--warmup", type=float, default=warmup, help="unmeasured seconds first (caches, arenas)")
    parser.add_argument("--max-batch", type=int, default=BatchOptions().max_rows,
                        help="--max-batch of the (batched) server (default: the server's)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="--batch-wait-ms of the server")
    parser.add_argument("--blas-threads", type=int, default=1, help="--blas-threads of the server")
    parser.add_argument("--log-dir", default="/tmp", help="where the server's log goes")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.set_defaults(limits=(max_seconds, max_warmup))


def check_load_arguments(parser: argparse.ArgumentParser, args) -> None:
    max_seconds, max_warmup = args.limits
    if not 1 <= args.clients <= 1024 or not 0 < args.seconds <= max_seconds or not 0 <= args.warmup <= max_warmup:
        parser.error(f"clients must be 1..1024, seconds in (0, {max_seconds:g}], warmup in [0, {max_warmup:g}]")


def start_server(model: str | None, max_batch: int, args, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "poetgen", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--max-batch", str(max_batch), "--batch-wait-ms", str(args.batch_wait_ms), "--max-queue", "1024",
               "--blas-threads", str(args.blas_threads)]
    if model:
        command += ["--model", model]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if health(url)["status"] == "ok":
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"server did not start; its log:\n{log.read_text(errors='replace')[-3000:]}")


def cpu_seconds(process: subprocess.Popen) -> float:
    """User + system CPU time of the server so far (Linux); contention on the machine barely moves it."""
    try:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(30)


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams.

    The load runs on the same cores as the server, so the client must be cheap: httpx spends about
    a millisecond of CPU per request, which the server then lacks. This one spends a small fraction.
    """

    def __init__(self, url: str):
        self.host, self.port = url.removeprefix("http://").split(":")
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, int(self.port))
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        if "content-length" not in headers:
            raise ValueError(f"answer without Content-Length: {lines[0]}")
        return status, await self.reader.readexactly(int(headers["content-length"]))

    async def close(self) -> None:
        """Close the connection, if open; the next post() opens a new one."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class HttpxConnection:
    def __init__(self, client: httpx.AsyncClient):
        self.client = client

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        response = await self.client.post(path, content=body, headers={"Content-Type": "application/json"})
        return response.status_code, response.content

    async def close(self) -> None:
        pass


async def one_client(connection, body: bytes, deadline: float, cap: int,
                     latencies: list[float], errors: list[str]) -> None:
    try:
        while time.monotonic() < deadline and len(latencies) + len(errors) < cap:
            started = time.perf_counter()
            try:
                status, content = await connection.post("/api/generate", body)
                poems = json.loads(content).get("poems") if status == 200 else None
                if not poems or not all(p["layout_ok"] for p in poems):
                    errors.append(f"{status}: {content[:200]!r}")
                    continue
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError) as error:
                errors.append(f"{type(error).__name__}: {error}")
                await connection.close()
                continue
            latencies.append(time.perf_counter() - started)
    finally:
        await connection.close()


async def load(url: str, clients: int, seconds: float, body: dict, cap: int, kind: str) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    payload = json.dumps(body).encode()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        connections = [RawConnection(url) if kind == "raw" else HttpxConnection(client) for _ in range(clients)]
        started = time.monotonic()
        await asyncio.gather(*(one_client(connection, payload, started + seconds, cap, latencies, errors)
                               for connection in connections))
        elapsed = time.monotonic() - started
    ordered = sorted(latencies)

    def percentile(share: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")

    return {"requests": len(latencies), "errors": len(errors), "seconds": elapsed,
            "rps": len(latencies) / elapsed, "p50_ms": percentile(0.5), "p95_ms": percentile(0.95),
            "mean_ms": 1000 * statistics.fmean(latencies) if latencies else float("nan"),
            "first_errors": errors[:3]}


def run_mode(name: str, args, body: dict) -> dict:
    max_batch = MODES[name] or args.max_batch
    log = Path(args.log_dir) / f"serve-{name}.log"
    process, url = start_server(args.model, max_batch, args, log)
    try:
        asyncio.run(load(url, args.clients, args.warmup, body, args.max_requests, args.client))   # first calls, caches
        before, cpu_before = health(url)["batching"], cpu_seconds(process)
        result = asyncio.run(load(url, args.clients, args.seconds, body, args.max_requests, args.client))
        after, cpu_after = health(url)["batching"], cpu_seconds(process)
    finally:
        stop_server(process)
    batches = after["batches"] - before["batches"]
    result["mean_batch"] = (after["rows"] - before["rows"]) / batches if batches else 0.0
    result["server_cpu_ms"] = 1000 * (cpu_after - cpu_before) / max(result["requests"], 1)
    return {"mode": name, "max_batch": max_batch, **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    load_arguments(parser, seconds=20.0, warmup=3.0, max_seconds=600, max_warmup=60,
                   seconds_help="measured seconds per mode")
    parser.add_argument("--max-requests", type=int, default=100_000, help="hard cap on requests per phase")
    parser.add_argument("--form", default="wujue", help="form of every request")
    parser.add_argument("--best-of", type=int, default=None,
                        help="best_of of every request (default: the server's, i.e. generate's default)")
    parser.add_argument("--modes", default="batched,one-at-a-time", help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="load generator: a minimal keep-alive client (cheap on shared cores) or httpx")
    args = parser.parse_args()
    check_load_arguments(parser, args)
    body = {"form": args.form}   # no seed: every request draws its own, as page visitors' do
    if args.best_of is not None:
        body["best_of"] = args.best_of
    rows = [run_mode(name, args, body) for name in args.modes.split(",")]
    print(f"{'mode':<14} {'clients':>7} {'max batch':>9} {'requests':>8} {'req/s':>8} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'errors':>6} {'mean batch':>10} {'server CPU ms/req':>17}")
    for row in rows:
        print(f"{row['mode']:<14} {args.clients:>7} {row['max_batch']:>9} {row['requests']:>8} {row['rps']:>8.1f} "
              f"{row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} {row['errors']:>6} {row['mean_batch']:>10.1f} "
              f"{row['server_cpu_ms']:>17.2f}")
        for error in row["first_errors"]:
            print(f"  error: {error}")
    by_mode = {row["mode"]: row for row in rows}
    if {"batched", "one-at-a-time"} <= set(by_mode) and by_mode["one-at-a-time"]["rps"] > 0:
        print(f"batching speed-up: {by_mode['batched']['rps'] / by_mode['one-at-a-time']['rps']:.2f}x requests/s")
    if args.json:
        print(json.dumps(rows, indent=1))
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
