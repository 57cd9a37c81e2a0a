"""Bounded load test of `inception-hub serve` on loopback: does dynamic batching pay?

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

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "inception_hub" / "data" / "samples"


def start_server(model: str, max_batch: int, timeout_ms: float, workers: int, checkpoint: str | None, env: dict):
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
        "--max-queue",
        "4096",
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
    args = p.parse_args()
    env = dict(os.environ)
    results = [run(args, 1, env), run(args, args.max_batch, env)]
    print(
        f"{args.clients} clients x {args.seconds:g}s, model {args.model}, one JPEG per request, {os.cpu_count()} CPUs"
    )
    print(f"{'max_batch':>9} {'requests':>9} {'errors':>6} {'img/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(
            f"{r['max_batch']:>9} {r['requests']:>9} {r['errors']:>6} {r['images_per_s']:>8.1f} "
            f"{r['p50_ms'] or float('nan'):>8.1f} {r['p99_ms'] or float('nan'):>8.1f}"
        )
    ratio = results[1]["images_per_s"] / max(results[0]["images_per_s"], 1e-9)
    print(f"dynamic batching (max {args.max_batch}) / batch-1 throughput: {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "results": results, "ratio": ratio}, indent=1))


if __name__ == "__main__":
    main()
