"""Soak test of `poetgen serve`: full load on loopback for a bounded time, with a mix of forms, prompts,
polishing (as the web page's 精修 asks), bad requests and clients that leave mid-request; reports errors,
latency and the server's memory.

It starts its own server on 127.0.0.1 (serve_load.py's) and stops it afterwards; it changes no model.
Goals: no unexpected error, resident memory growing at most 5 %, a queued request whose client left
costs no rows (the server's batching stats count it as abandoned).

    python benchmarks/serve_soak.py --seconds 150
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import sys
import time
from pathlib import Path

from serve_load import RawConnection, check_load_arguments, health, load_arguments, start_server, stop_server

PROMPTS = ["", "", "白日", "春风又绿", "明月", "孤帆远影碧空尽"]
FORMS = ["wujue", "qijue", "wulv", "qilv", "五绝", "七律", None]
# Bodies a server must refuse with a 4xx, and the statuses each may get.
BAD = [(b"{", (422,)), (b"[1, 2]", (422,)), (json.dumps({"colour": "red"}).encode(), (422,)),
       (json.dumps({"temperature": -1}).encode(), (422,)), (json.dumps({"form": "sonnet"}).encode(), (422,)),
       (json.dumps({"prompt": "abc"}).encode(), (422,)), (json.dumps({"acrostic": "春夏秋"}).encode(), (422,)),
       (json.dumps({"n": 0}).encode(), (422,)), (json.dumps({"seed": -5}).encode(), (422,)),
       (json.dumps({"prompt": "春" * 20_000}).encode(), (413,))]
MIX = (("good", 0.75), ("bad", 0.15), ("leave", 0.10))


def good_body(rng: random.Random) -> dict:
    body = {"n": rng.choice([1, 1, 2, 3])}
    form = rng.choice(FORMS)
    if form:
        body["form"] = form
    if rng.random() < 0.15 and form in ("wujue", "qijue", None):
        body["acrostic"] = "春夏秋冬"
    else:
        prompt = rng.choice(PROMPTS)
        if form in ("wujue", "五绝", "wulv", None):
            prompt = prompt[:4]
        body["prompt"] = prompt
    if rng.random() < 0.2:
        body["theme"] = rng.choice(["秋天思乡", "送别友人", "春雨"])
    if rng.random() < 0.2:
        body["tone"] = True
    if rng.random() < 0.1:
        body["traditional"] = True
    if rng.random() < 0.05:   # the web page's 精修: two polishing rounds on the server's polishing threads
        body["polish"] = 2
    return body


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Tally:
    def __init__(self):
        self.latencies: list[float] = []
        self.counts = collections.Counter()
        self.unexpected: list[str] = []

    def fail(self, what: str) -> None:
        self.counts["unexpected"] += 1
        if len(self.unexpected) < 5:
            self.unexpected.append(what)


async def leave_mid_request(url: str, body: dict, rng: random.Random) -> None:
    """Send a request and vanish (a reset, as a closed browser tab) before the answer comes."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    payload = json.dumps(body).encode()
    writer.write(f"POST /api/generate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    await writer.drain()
    await asyncio.sleep(rng.uniform(0.0, 0.05))
    writer.transport.abort()


async def one_client(url: str, seed: int, deadline: float, tally: Tally) -> None:
    rng = random.Random(seed)
    connection = RawConnection(url)
    try:
        while time.monotonic() < deadline:
            kind = rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
            if kind == "leave":
                await leave_mid_request(url, {**good_body(rng), "n": 5}, rng)
                tally.counts["left"] += 1
                continue
            if kind == "bad":
                payload, expected = rng.choice(BAD)
            else:
                body = good_body(rng)
                payload, expected = json.dumps(body).encode(), (200,)
            started = time.perf_counter()
            try:
                status, content = await connection.post("/api/generate", payload)
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                tally.fail(f"{kind}: {type(error).__name__}: {error}")
                await connection.close()
                continue
            if status not in expected:
                tally.fail(f"{kind}: {status} {content[:160]!r}")
            elif kind == "bad":
                tally.counts[f"refused {status}"] += 1
                if status == 413:
                    await connection.close()   # the rest of the oversized body is not read: start afresh
            else:
                poems = json.loads(content).get("poems") or []
                if len(poems) != body["n"] or not all(poem.get("lines") for poem in poems):
                    tally.fail(f"good: {len(poems)} poems for n={body['n']}: {content[:160]!r}")
                else:
                    tally.counts["answered"] += 1
                    tally.latencies.append(time.perf_counter() - started)
    finally:
        await connection.close()


async def soak(url: str, pid: int, clients: int, seconds: float, seed: int) -> dict:
    tally = Tally()
    memory = [resident_mib(pid)]
    deadline = time.monotonic() + seconds

    async def sample_memory():
        while time.monotonic() < deadline:
            await asyncio.sleep(min(5.0, max(deadline - time.monotonic(), 0)))
            memory.append(resident_mib(pid))

    await asyncio.gather(sample_memory(), *(one_client(url, seed + i, deadline, tally) for i in range(clients)))
    return {"tally": tally, "memory": memory}


def settled_stats(url: str, timeout: float = 120) -> dict:
    """The server's batching stats once the worker has nothing left to do."""
    previous, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = health(url)["batching"]
        if stats == previous:
            return stats
        previous = stats
        time.sleep(1.0)
    return previous


def percentile(ordered: list[float], share: float) -> float:
    return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    load_arguments(parser, seconds=600.0, warmup=10.0, max_seconds=3600, max_warmup=120,
                   seconds_help="how long the load lasts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the request mix")
    args = parser.parse_args()
    check_load_arguments(parser, args)
    process, url = start_server(args.model, args.max_batch, args, Path(args.log_dir) / "serve-soak.log")
    try:
        asyncio.run(soak(url, process.pid, args.clients, args.warmup, args.seed + 10_000))
        before = settled_stats(url)
        result = asyncio.run(soak(url, process.pid, args.clients, args.seconds, args.seed))
        after = settled_stats(url)
        memory_end = resident_mib(process.pid)
        alive = health(url)["status"] == "ok"
    finally:
        stop_server(process)
    tally, memory = result["tally"], result["memory"]
    ordered = sorted(tally.latencies)
    abandoned = after["abandoned"] - before["abandoned"]
    worker_requests = after["requests"] - before["requests"]
    # The worker answered every good request, and those of leaving clients it took before they left.
    sampled_anyway = worker_requests - tally.counts["answered"]
    refused = {k.split()[1]: v for k, v in tally.counts.items() if k.startswith("refused")}
    figures = {
        "seconds": args.seconds, "clients": args.clients, "answered": tally.counts["answered"],
        "refused_as_expected": refused, "left_mid_request": tally.counts["left"],
        "unexpected_errors": tally.counts["unexpected"], "first_unexpected": tally.unexpected,
        "p50_ms": percentile(ordered, 0.5), "p95_ms": percentile(ordered, 0.95), "p99_ms": percentile(ordered, 0.99),
        "rss_start_mib": memory[0], "rss_end_mib": memory_end, "rss_peak_mib": max(memory + [memory_end]),
        "rss_growth_pct": 100 * (memory_end / memory[0] - 1), "left_skipped_by_worker": abandoned,
        "left_sampled_before_leaving": sampled_anyway, "server_alive": alive,
    }
    total = figures["answered"] + sum(refused.values()) + figures["left_mid_request"] + figures["unexpected_errors"]
    print(f"soak: {args.seconds:.0f} s at full load, {args.clients} clients, {total} requests "
          f"({total / args.seconds:.1f}/s)")
    print(f"  answered {figures['answered']}, refused as expected {sum(refused.values())} "
          f"({', '.join(f'{n}x {s}' for s, n in sorted(refused.items()))}), left mid-request "
          f"{figures['left_mid_request']}, unexpected errors {figures['unexpected_errors']}")
    print(f"  latency of answered requests: p50 {figures['p50_ms']:.0f} ms, p95 {figures['p95_ms']:.0f} ms, "
          f"p99 {figures['p99_ms']:.0f} ms")
    print(f"  server resident memory: {figures['rss_start_mib']:.1f} MiB after warm-up, "
          f"{figures['rss_end_mib']:.1f} MiB at the end ({figures['rss_growth_pct']:+.1f} %), "
          f"peak {figures['rss_peak_mib']:.1f} MiB")
    print(f"  clients that left: {abandoned} skipped by the worker (no rows spent), "
          f"{sampled_anyway} already being sampled when they left")
    for error in tally.unexpected:
        print(f"  unexpected: {error}")
    if args.json:
        print(json.dumps(figures, indent=1))
    ok = figures["unexpected_errors"] == 0 and figures["rss_growth_pct"] <= 5 and alive
    print("goal met" if ok else "GOAL MISSED: unexpected errors, memory growth over 5 % or a dead server")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
