"""Summarise training runs from their metrics.csv: best validation loss, validation at equal
step counts, wall time; prints a Markdown table and writes JSON.

    .venv/bin/python bench/train_report.py runs/abl-mtvae runs/abl-no-vae ... [--at-step 100]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from mtvae.run import RunDir


def summarise(run: Path, at_step: int) -> dict:
    rows = RunDir(run).metrics()
    val = [r for r in rows if r["split"] == "valid"]
    train = [r for r in rows if r["split"] == "train" and r["tokens_per_s"]]
    best = min(val, key=lambda r: float(r["loss"]))
    at = [r for r in val if int(r["step"]) == at_step]
    rate = sorted(float(r["tokens_per_s"]) for r in train[1:])
    return {
        "run": run.name,
        "steps": int(val[-1]["step"]),
        "minutes": round(float(val[-1]["elapsed_s"]) / 60, 1),
        "best_step": int(best["step"]),
        "best_val_nats": float(best["loss"]),
        "best_val_bits": float(best["loss"]) / math.log(2),
        f"val_bits_at_step_{at_step}": float(at[0]["loss"]) / math.log(2) if at else None,
        "median_train_tokens_per_s": rate[len(rate) // 2] if rate else None,
        "last_train_ce_bits": float(train[-1]["ce"]) / math.log(2) if train else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--at-step", type=int, default=100)
    ap.add_argument("--json", default="bench/results/train_runs.json")
    args = ap.parse_args()
    rows = [summarise(r, args.at_step) for r in args.runs]
    key = f"val_bits_at_step_{args.at_step}"
    print(f"| run | steps | minutes | val bits/token at step {args.at_step} | best val bits/token "
          "(step) | train tokens/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        at = f"{r[key]:.3f}" if r[key] is not None else "–"
        print(f"| {r['run']} | {r['steps']} | {r['minutes']} | {at} | {r['best_val_bits']:.3f} "
              f"({r['best_step']}) | {r['median_train_tokens_per_s']:.0f} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
