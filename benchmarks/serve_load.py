"""Bounded load test of `inception-hub serve` on loopback: does dynamic batching pay?

`--hostile` instead drives one server with many clients posting large requests and clients
that stall their bodies, and reports the answers by status, the 429 latency, how slow bodies
ended, and the server's memory before, at its peak and after.

Starts the server twice, with --max-batch 1 and with dynamic batching, and drives each with N
concurrent keep-alive clients posting one base64 JPEG per request for a fixed time. Prints
throughput and latency percentiles, and the batched/batch-1 throughput ratio measured in this
run. Only 127.0.0.1 is contacted; every loop stops by itself.

    python benchmarks/serve_load.py --clients 8 --seconds 20
    python benchmarks/serve_load.py --checkpoint inception_v1=/path/inception_v1.ckpt --json out.json
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from common import ROOT, cpu_count, write_json

SAMPLES = ROOT / "src" / "inception_hub" / "data" / "samples"


def start_server(
    model: str,
    max_batch: int,
    timeout_ms: float,
    workers: int,
    checkpoint: str | None,
    env: dict,
    extra: tuple[str, ...] = ("--max-queue", "4096"),
):
    cmd = [
        sys.executable,
        "-m",
        "inception_hub.cli",
        "serve",
        "--models",
        model,
        "--port",
        "0",
        "--grpc-port",
        "-1",
        "--max-batch",
        str(max_batch),
        "--batch-timeout-ms",
        str(timeout_ms),
        "--workers",
        str(workers),
        *extra,
    ]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"server did not start: {line}{proc.stderr.read()}")
    return proc, int(match.group(1))


def client(port: int, model: str, body: bytes, stop_at: float, latencies: list, errors: list) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    path = f"/v1/models/{model}:predict"
    while time.perf_counter() < stop_at:
        t = time.perf_counter()
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(response.status)
                continue
        except (OSError, http.client.HTTPException) as e:
            errors.append(type(e).__name__)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            continue
        latencies.append(time.perf_counter() - t)
    conn.close()


def run(args, max_batch: int, env: dict) -> dict:
    proc, port = start_server(args.model, max_batch, args.batch_timeout_ms, args.workers, args.checkpoint, env)
    try:
        images = sorted(SAMPLES.glob("*.jpg"))
        body = json.dumps({"instances": [{"b64": base64.b64encode(images[0].read_bytes()).decode()}]}).encode()
        warm: list = []
        client(port, args.model.split("/")[0], body, time.perf_counter() + 2.0, warm, [])  # warm-up
        latencies: list[float] = []
        errors: list = []
        stop_at = time.perf_counter() + args.seconds
        threads = [
            threading.Thread(target=client, args=(port, args.model.split("/")[0], body, stop_at, latencies, errors))
            for _ in range(args.clients)
        ]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    lat = np.array(latencies) * 1000
    return {
        "max_batch": max_batch,
        "requests": len(latencies),
        "errors": len(errors),
        "images_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
    }


# Hostile load ----------------------------------------------------------------------------------


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process (VmHWM: its peak), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hostile_client(port: int, path: str, body: bytes, stop_at: float, results: list) -> None:
    """Large requests, one after another, until stop_at: (status or error, seconds) per request."""
    while time.perf_counter() < stop_at:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        t = time.perf_counter()
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            results.append((response.status, time.perf_counter() - t))
        except (OSError, http.client.HTTPException) as e:
            results.append((type(e).__name__, time.perf_counter() - t))
        finally:
            conn.close()


def slow_body(port: int, path: str, declared: int, hold_s: float, results: list) -> None:
    """Declare a large body, send a few bytes of it, and wait: the server must end it itself."""
    import socket

    t = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=hold_s) as sock:
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            sock.sendall(f"{head}Content-Length: {declared}\r\n\r\n".encode() + b'{"instances": [')
            answer = sock.recv(64)
            results.append((int(answer.split(b" ")[1]) if answer else "closed", time.perf_counter() - t))
    except OSError as e:
        results.append((type(e).__name__, time.perf_counter() - t))


def hostile(args, env: dict) -> dict:
    """Many clients sending large requests at once, and slow bodies, against default-sized limits."""
    extra = ("--max-queue", "64", "--timeout", str(args.timeout), "--max-inflight-mb", str(args.max_inflight_mb))
    proc, port = start_server(args.model, args.max_batch, args.batch_timeout_ms, 1, args.checkpoint, env, extra)
    try:
        path = f"/v1/models/{args.model.split('/')[0]}:predict"
        photo = base64.b64encode(sorted(SAMPLES.glob("*.jpg"))[0].read_bytes()).decode()
        body = json.dumps({"instances": [{"b64": photo}] * 64}).encode()  # 64 photos per request
        client(
            port,
            args.model.split("/")[0],
            json.dumps({"instances": [{"b64": photo}]}).encode(),
            time.perf_counter() + 2.0,
            [],
            [],
        )  # warm-up
        before = rss_mib(proc.pid)
        results: list = []
        slow: list = []
        stop_at = time.perf_counter() + args.seconds
        threads = [
            threading.Thread(target=hostile_client, args=(port, path, body, stop_at, results))
            for _ in range(args.clients)
        ] + [
            threading.Thread(target=slow_body, args=(port, path, 8 << 20, args.seconds + 60, slow))
            for _ in range(args.slow_clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(2.0)
        after, peak = rss_mib(proc.pid), rss_mib(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    codes = [c for c, _ in results]
    refused = np.array([s for c, s in results if c == 429]) * 1000
    slow_s = np.array([s for _, s in slow])
    return {
        "clients": args.clients,
        "slow_clients": args.slow_clients,
        "request_mb": len(body) / 2**20,
        "codes": {str(c): codes.count(c) for c in sorted(set(codes), key=str)},
        "server_errors": sum(
            1 for c in codes + [c for c, _ in slow] if isinstance(c, int) and c >= 500 and c != 503 and c != 504
        ),
        "p50_429_ms": float(np.percentile(refused, 50)) if len(refused) else None,
        "p99_429_ms": float(np.percentile(refused, 99)) if len(refused) else None,
        "slow_bodies_ended": {str(c): [x for x, _ in slow].count(c) for c in {x for x, _ in slow}},
        "slow_body_max_s": float(slow_s.max()) if len(slow_s) else None,
        "rss_before_mib": before,
        "rss_after_mib": after,
        "rss_peak_mib": peak,
        "max_inflight_mb": args.max_inflight_mb,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="inception_v1")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--batch-timeout-ms", type=float, default=5.0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--checkpoint", help="ARCH=PATH; default: the cached weights")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--hostile", action="store_true", help="large requests from many clients, and slow bodies")
    p.add_argument("--slow-clients", type=int, default=50, help="with --hostile: clients that stall their body")
    p.add_argument("--timeout", type=float, default=10.0, help="with --hostile: the server's --timeout")
    p.add_argument("--max-inflight-mb", type=float, default=64.0, help="with --hostile: the server's limit")
    args = p.parse_args()
    env = dict(os.environ)
    if args.hostile:
        r = hostile(args, env)
        print(
            f"{r['clients']} clients x {args.seconds:g}s posting {r['request_mb']:.1f} MB requests "
            f"(64 photos each), {r['slow_clients']} slow bodies; {cpu_count()} CPUs"
        )
        print(f"answers: {r['codes']}; 5xx other than 503/504: {r['server_errors']}")
        print(
            f"429 latency: p50 {r['p50_429_ms'] or float('nan'):.0f} ms, p99 {r['p99_429_ms'] or float('nan'):.0f} ms"
        )
        print(f"slow bodies ended with {r['slow_bodies_ended']}, the last after {r['slow_body_max_s'] or 0:.1f}s")
        print(
            f"server RSS: {r['rss_before_mib']:.0f} MiB before, {r['rss_peak_mib']:.0f} MiB peak, "
            f"{r['rss_after_mib']:.0f} MiB after (--max-inflight-mb {r['max_inflight_mb']:g})"
        )
        if args.json:
            write_json(args.json, {"settings": vars(args), "hostile": r}, indent=1)
        return
    results = [run(args, 1, env), run(args, args.max_batch, env)]
    print(f"{args.clients} clients x {args.seconds:g}s, model {args.model}, one JPEG per request, {cpu_count()} CPUs")
    print(f"{'max_batch':>9} {'requests':>9} {'errors':>6} {'img/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(
            f"{r['max_batch']:>9} {r['requests']:>9} {r['errors']:>6} {r['images_per_s']:>8.1f} "
            f"{r['p50_ms'] or float('nan'):>8.1f} {r['p99_ms'] or float('nan'):>8.1f}"
        )
    ratio = results[1]["images_per_s"] / max(results[0]["images_per_s"], 1e-9)
    print(f"dynamic batching (max {args.max_batch}) / batch-1 throughput: {ratio:.2f}x")
    if args.json:
        write_json(args.json, {"settings": vars(args), "results": results, "ratio": ratio}, indent=1)


if __name__ == "__main__":
    main()
