"""Prior samples with bar latents that share a piece-wide part (``sample --coherence C``,
from N(0, I)) and, for runs with one, from the learnt prior (``mtvae prior``; row "learnt"):
the overlap of their music statistics with the held-out split, per feature, for several C.
Prints a Markdown table and writes JSON.

    .venv/bin/python bench/coherence.py runs/fim --data data/pn2 [--values 0 0.5 0.9] \
        [--samples 32] [--bars 8] [--only-learnt] [--guidance W] [--json bench/results/coherence.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mtvae import MusicVAE
from mtvae import checkpoint as ck
from mtvae import metrics as M
from mtvae.evaluate import _real, _songs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--values", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 0.9])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only-learnt", action="store_true",
                    help="for runs with a learnt prior, only its samples (no N(0, I) rows)")
    ap.add_argument("--guidance", type=float, default=0.0,
                    help="latent guidance of the decoding (MusicVAE.guidance; default 0)")
    ap.add_argument("--json", type=Path, default=Path("bench/results/coherence.json"))
    a = ap.parse_args()
    rows = []
    for run in a.runs:
        m = MusicVAE.load(run, prior="normal", guidance=a.guidance)
        real = M.set_features(_real(_songs(a.data, "test"), a.bars, m.limits))
        learnt = (run / ck.PRIOR).is_file()
        values = [] if learnt and a.only_learnt else a.values
        for c in values + (["learnt"] if learnt else []):
            if c == "learnt":
                m = MusicVAE.load(run, prior="learnt", guidance=a.guidance)
                pieces = m.sample(bars=a.bars, n=a.samples, seed=a.seed)
            else:
                pieces = m.sample(bars=a.bars, n=a.samples, seed=a.seed, coherence=c)
            stats = M.compare_sets(real, M.set_features(pieces))
            overlap = {k: v["overlap"] for k, v in stats.items()}
            rows.append({"run": run.name, "coherence": c, "guidance": a.guidance,
                         "samples": a.samples, "bars": a.bars,
                         "overlap": overlap, "mean_overlap": float(np.mean(list(overlap.values())))})
            print(f"{run.name} coherence {c}: mean overlap {rows[-1]['mean_overlap']:.3f}", flush=True)
    feats = list(rows[0]["overlap"])
    print("\n| run | coherence | " + " | ".join(feats) + " | mean |")
    print("|---|---:|" + "---:|" * (len(feats) + 1))
    for r in rows:
        print(f"| {r['run']} | {r['coherence']} | "
              + " | ".join(f"{r['overlap'][k]:.3f}" for k in feats) + f" | {r['mean_overlap']:.3f} |")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    ck.atomic_write(a.json, lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=1)))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
