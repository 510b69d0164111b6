"""Load check of mtvae studio: N clients on loopback ask for pieces for a bounded time.

Starts the studio on RUN_DIR in this process (as ``mtvae studio`` does: the model loaded once,
one queue), then N client threads, each its own ``gradio_client.Client`` (its own session, as
a browser tab is), call the page's ``/sample`` endpoint (``--bars`` bars, the default
sampling, a fresh seed per request) back to back until ``--seconds`` have passed; requests
still running then are waited for and counted. Reports requests served, errors, and latency
percentiles (from a client's call to its answer, queueing included), as a table and as JSON.

    .venv/bin/python bench/studio_load.py RUN_DIR [--clients 4] [--seconds 60] [--bars 8]
        [--json bench/results/studio_load.json]

Target: 0 errors, p95 under 3 s for an 8-bar sample with 4 clients on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import threading
import time
from pathlib import Path

TARGET_P95_S = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=None,
                    help="generations at a time (default: the studio's, 1)")
    ap.add_argument("--genre", default=None, help="default: the model's first genre")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "studio_load.json"))
    args = ap.parse_args()

    from gradio_client import Client

    from mtvae.studio import serve

    from mtvae.studio import CONCURRENCY

    concurrency = args.concurrency or CONCURRENCY
    demo, url = serve(args.run_dir, port=free_port(), block=False, concurrency=concurrency)
    vae = demo.studio.vae
    genres = [g for g in vae.genres if g != "unknown"] or vae.genres
    genre = args.genre or genres[0]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + args.seconds

    def client(k: int) -> None:
        c = Client(url, verbose=False)
        i = 0
        while time.monotonic() < stop:
            seed = k * 100_000 + i
            i += 1
            t = time.perf_counter()
            try:
                c.predict(1.0, 1.0, 0.5, seed, genre, args.bars, vae.default_meter(), "", "",
                          api_name="/sample")
                with lock:
                    latencies.append(time.perf_counter() - t)
            except Exception as e:  # noqa: BLE001 - every failure is counted, with its reason
                with lock:
                    errors.append(f"{type(e).__name__}: {e}"[:200])

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - t0
    demo.close()
    sizes = demo.studio.batcher.sizes
    p50, p95, p99 = (percentile(latencies, q) for q in (0.5, 0.95, 0.99))
    row = {"clients": args.clients, "concurrency": concurrency, "seconds": args.seconds, "wall_s": wall, "bars": args.bars,
           "served": len(latencies), "errors": len(errors), "error_examples": errors[:5],
           "requests_per_s": len(latencies) / wall, "p50_s": p50, "p95_s": p95, "p99_s": p99,
           "max_s": max(latencies, default=float("nan")),
           "batches": len(sizes), "pieces_per_batch": statistics.mean(sizes) if sizes else 0,
           "mean_s": statistics.mean(latencies) if latencies else float("nan")}
    print(f"{args.run_dir}: {args.clients} clients x {args.seconds:.0f} s, {args.bars}-bar samples "
          f"({genre}), {os.cpu_count()} cores, {concurrency} generation(s) at a time\n")
    print("| clients | served | errors | req/s | p50 s | p95 s | p99 s | max s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.clients} | {row['served']} | {row['errors']} | {row['requests_per_s']:.2f} | "
          f"{p50:.2f} | {p95:.2f} | {p99:.2f} | {row['max_s']:.2f} |")
    print(f"\n{len(sizes)} batches, {row['pieces_per_batch']:.2f} pieces per batch")
    ok = row["errors"] == 0 and p95 < TARGET_P95_S
    print(f"\ntarget: 0 errors and p95 under {TARGET_P95_S:.0f} s: {'met' if ok else 'NOT met'}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"run": str(args.run_dir), "result": row, "target_met": ok,
                               "machine": {"cpus": os.cpu_count(),
                                           "python": platform.python_version()}}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
