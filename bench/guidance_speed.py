"""What latent guidance costs in generation time: ``MusicVAE.sample`` of the same pieces
(same seed, learnt or N(0, I) prior as the run has) with guidance 0 and with guidance w,
side by side in one process, batch 1 and batch 8. Guidance decodes a second copy of the batch
with z = 0, so each step's batch doubles. Prints a table, writes JSON.

    OMP_NUM_THREADS=1 .venv/bin/python bench/guidance_speed.py RUN_DIR [--bars 8]
        [--guidance 0 0.5] [--batch-sizes 1 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from mtvae import MusicVAE
from mtvae import checkpoint as ck
from mtvae.data import tokens as T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--guidance", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path("bench/results/guidance_speed.json"))
    a = ap.parse_args()
    m = MusicVAE.load(a.run)
    rows = []
    print(f"threads {torch.get_num_threads()}\n\n| batch | guidance | tokens | seconds (median) | "
          "tokens/s | time vs guidance 0 |\n|---:|---:|---:|---:|---:|---:|")
    for b in a.batch_sizes:
        base = None
        for w in a.guidance:
            m.guidance = w
            times, tokens = [], 0
            for r in range(a.repeats):
                t0 = time.perf_counter()
                out = m.sample(bars=a.bars, n=b, seed=r)
                times.append(time.perf_counter() - t0)
                out = out if isinstance(out, list) else [out]
                tokens = sum(len(T.encode_score(s, m.tokenizer, m.tables).ids) for s in out)
            t = statistics.median(times)
            base = base or t
            rows.append({"batch": b, "guidance": w, "tokens_last": tokens, "seconds": t,
                         "tokens_per_s": tokens / t, "time_ratio": t / base})
            print(f"| {b} | {w:g} | {tokens} | {t:.2f} | {tokens / t:.0f} | {t / base:.2f}× |",
                  flush=True)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    ck.atomic_write(a.json, lambda tmp: Path(tmp).write_text(json.dumps(
        {"run": str(a.run), "bars": a.bars, "threads": torch.get_num_threads(), "rows": rows},
        indent=1)))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
