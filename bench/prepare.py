"""Preprocessing speed: ``mtvae prepare`` against the original study's music21 pipeline.

Both run in the same process on the same POP909 files (the first N of
/work/shared/data/pop909/*.mid in sorted order):

* mtvae: ``mtvae.data.prepare([folder], out, workers=W)`` with a fresh ``out`` each time (cold token
  cache), for W = 1 and 2. Tokens are the ones written to the splits.
* music21 (bench/seed_pipeline.py): one file at a time on a subset, since it is slow; then
  the same subset on a 2-process Pool.

The files are read once before timing so both pipelines start with a warm disk cache.

    .venv/bin/python bench/prepare.py [--files 200] [--music21-files 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from seed_pipeline import music21_tokens  # noqa: E402

from mtvae.data import prepare  # noqa: E402  (the public export; the module was renamed)

DATA = Path("/work/shared/data/pop909")
TARGET_FPS, TARGET_RATIO = 50.0, 20.0


def row(pipeline: str, workers: int, files: int, seconds: float, tokens: int) -> dict:
    return {"pipeline": pipeline, "workers": workers, "files": files, "seconds": seconds,
            "files_per_s": files / seconds, "tokens_per_s": tokens / seconds,
            "tokens_per_file": tokens / files, "tokens": tokens}


def time_mtvae(files: list[Path], workers: int) -> dict:
    with tempfile.TemporaryDirectory() as src, tempfile.TemporaryDirectory() as out:
        for f in files:
            os.symlink(f, Path(src) / f.name)
        t0 = time.perf_counter()
        report = prepare([src], out, workers=workers, progress=False)
        dt = time.perf_counter() - t0
    assert report["kept"] == len(files), report.get("skipped")
    tokens = sum(s["tokens"] for s in report["splits"].values())
    return row("mtvae prepare", workers, len(files), dt, tokens)


def time_music21(files: list[Path], workers: int) -> dict:
    paths = [str(f) for f in files]
    t0 = time.perf_counter()
    if workers == 1:
        results = [music21_tokens(p) for p in paths]
    else:
        with get_context("fork").Pool(workers) as pool:
            results = pool.map(music21_tokens, paths, chunksize=1)
    dt = time.perf_counter() - t0
    return row("music21 (original)", workers, len(files), dt, sum(map(len, results)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--music21-files", type=int, default=10)
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "prepare.json"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    files = sorted(DATA.glob("*.mid"))[: args.files]
    m21_files = files[: args.music21_files]
    for f in files:  # warm the disk cache for both pipelines
        f.read_bytes()

    rows = [time_mtvae(files, 1), time_mtvae(files, 2),
            time_music21(m21_files, 1), time_music21(m21_files, 2)]

    print("| pipeline | workers | files | seconds | files/s | tokens/s | tokens/file |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['pipeline']} | {r['workers']} | {r['files']} | {r['seconds']:.2f} | "
              f"{r['files_per_s']:.1f} | {r['tokens_per_s']:,.0f} | {r['tokens_per_file']:,.0f} |")
    mt2, m21_1, m21_2 = rows[1]["files_per_s"], rows[2]["files_per_s"], rows[3]["files_per_s"]
    ratios = {"vs_music21_2_workers": mt2 / m21_2, "vs_music21_1_worker": mt2 / m21_1}
    print(f"\nmtvae (2 workers) is {ratios['vs_music21_2_workers']:.1f}x music21 on 2 processes, "
          f"{ratios['vs_music21_1_worker']:.1f}x music21 on 1 process (files/s).")
    print(f"targets: >= {TARGET_FPS:.0f} files/s with 2 workers: "
          f"{'met' if mt2 >= TARGET_FPS else 'NOT met'} ({mt2:.1f}); "
          f">= {TARGET_RATIO:.0f}x music21 (same processes): "
          f"{'met' if ratios['vs_music21_2_workers'] >= TARGET_RATIO else 'NOT met'}")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "files": args.files, "music21_files": args.music21_files, "rows": rows,
        "speed_ratio_files_per_s": ratios,
        "targets": {"files_per_s_2_workers": TARGET_FPS, "ratio_vs_music21": TARGET_RATIO},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
