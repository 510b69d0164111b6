"""How to fit the learnt prior (``mtvae prior``): the latents of a run's training songs are
encoded once (cached as tensors, read back with ``weights_only``), then prior variants are
fitted on the same latents and scored on the same validation songs (mean -log p(z) per bar,
nats; N(0, I) beside it). Prints a Markdown table and writes JSON.

    .venv/bin/python bench/prior_fit.py runs/long2k-kl128-s2000 --data data/pn2 \\
        [--songs 800] [--json bench/results/prior_fit.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from mtvae import checkpoint as ck
from mtvae.config import PriorConfig
from mtvae.data.dataset import load_split
from mtvae.model import MTVAE
from mtvae.train import _prior_nll, encode_store, new_prior, prior_step

# (name, songs used, bars per song (None: all), PriorConfig fields)
VARIANTS = [
    ("400 songs, all bars, no dropout", 400, None, {"dropout": 0.0}),
    ("400 songs, all bars", 400, None, {}),
    ("800 songs, all bars", 800, None, {}),
    ("800 songs, 24 bars each", 800, 24, {}),
    ("400 songs, all bars, 1 component, 128 units", 400, None, {"n_mix": 1, "d_hidden": 128}),
]


def fit(songs, valid, kw: dict, steps: int) -> dict:
    """``mtvae prior``'s model and steps at a constant learning rate, no early stopping."""
    pc = PriorConfig(d_latent=songs[0]["mu"].shape[1], steps=steps, **kw)
    prior = new_prior(pc, songs)
    opt = torch.optim.AdamW(prior.parameters(), lr=pc.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    curve, normal = [], None
    for step in range(1, steps + 1):
        loss = prior_step(prior, opt, songs, pc, gen)
        if step % 50 == 0:
            v, normal = _prior_nll(prior, valid, 0)
            curve.append((step, round(loss.item(), 2), round(v, 2)))
    best = min(curve, key=lambda c: c[2])
    return {"best_valid_nll": best[2], "best_step": best[0], "last_valid_nll": curve[-1][2],
            "standard_normal_nll": normal, "curve": curve}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--songs", type=int, default=800)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--cache", type=Path, default=Path("bench/results/prior_latents.pt"))
    ap.add_argument("--json", type=Path, default=Path("bench/results/prior_fit.json"))
    a = ap.parse_args()
    if a.cache.is_file():
        d = torch.load(a.cache, weights_only=True)
    else:
        cfg = ck.load_config(a.run)
        model = MTVAE(cfg.model)
        ck.load_weights(model, a.run / ck.BEST)
        model.eval()
        tr, va = load_split(a.data, "train"), load_split(a.data, "valid")
        order = np.random.default_rng(0).permutation(len(tr))[:a.songs]
        d = {"songs": encode_store(model, tr, order.tolist(), "cpu"),
             "valid": encode_store(model, va, range(min(len(va), 50)), "cpu")}
        ck.atomic_write(a.cache, lambda tmp: torch.save(d, tmp))
    rows = []
    for name, n, cap, kw in VARIANTS:
        songs = [{k: (v[:cap] if torch.is_tensor(v) and cap else v) for k, v in s.items()}
                 for s in d["songs"][:n]]
        r = fit(songs, d["valid"], kw, a.steps)
        rows.append({"variant": name, "bars": sum(len(s["mu"]) for s in songs), **r})
        print(f"{name}: best {r['best_valid_nll']:.2f} at step {r['best_step']}, "
              f"last {r['last_valid_nll']:.2f}", flush=True)
    print("\n| variant | bars | valid -log p(z), best (step) | at the last step | N(0, I) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['bars']} | {r['best_valid_nll']:.2f} ({r['best_step']}) | "
              f"{r['last_valid_nll']:.2f} | {r['standard_normal_nll']:.2f} |")
    ck.atomic_write(a.json, lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=1)))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
