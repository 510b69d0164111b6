"""Validation ELBO of several checkpoints, side by side, per genre, on every window of the
valid split (the run's own validation reads 64): whether a long run is still learning (the
shipped run's stopping rule: less than 0.01 bits per token gained per hour). Every checkpoint
is read on the same windows with the same seed; prints a Markdown table and writes JSON.

    .venv/bin/python bench/checkpoint_elbo.py step2000=src/mtvae/pretrained \\
        step2661=runs/ck2661 last=runs/ship:last --data data/ship \\
        --json bench/results/ship_checkpoints.json

FOLDER is a run or an exported model; ``:last`` reads the run's last checkpoint instead of its
best. The N(0, I) prior: the bound the run's validation reports. ``--as-genre unknown``: every
song is given that genre instead of its own (what generation without --genre conditions on);
rows stay grouped by each song's real genre.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from mtvae.api import MusicVAE
from mtvae.data import DataDir
from mtvae.evaluate import likelihood
from mtvae.run import BEST, LAST


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", metavar="NAME=FOLDER[:last]")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="valid", help="valid (default): the stopping rule's")
    ap.add_argument("--max-windows", type=int, default=0, help="per genre; 0 = all")
    ap.add_argument("--as-genre", metavar="GENRE", help="condition every song on this genre")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    data = DataDir(a.data)
    store = data.split(a.split)
    genre_of = np.asarray(store.genre)
    genres = [(g, np.flatnonzero(genre_of == i).tolist()) for i, g in enumerate(data.genres)]
    genres = [(g, s) for g, s in genres if s]
    if a.as_genre is not None:  # the split's store, once read, is the one likelihood() reads
        given = np.full_like(genre_of, data.genres.index(a.as_genre))
        data._splits[a.split] = dataclasses.replace(store, genre=given)
    out = {"data": str(data), "split": a.split, "max_windows": a.max_windows,
           "as_genre": a.as_genre, "models": {}}
    for item in a.models:
        name, _, folder = item.partition("=")
        folder, _, which = folder.partition(":")
        m = MusicVAE.load(folder, weights=LAST if which == "last" else BEST, prior="normal")
        t0, per, tok, nats = time.time(), {}, 0, 0.0
        for g, songs in genres:
            r = likelihood(m, data, a.split, a.max_windows or None, songs=songs)
            per[g] = {"bits_per_token": r["bits_per_token"], "tokens": r["tokens"],
                      "reconstruction_nats_per_token": r["reconstruction_nats_per_token"],
                      "kl_nats_per_bar": r["kl_nats_per_bar"]}
            tok += r["tokens"]
            nats += r["elbo_nats_per_token"] * r["tokens"]
        out["models"][name] = {"folder": folder, "weights": which or "best",
                               "model_hash": m.model_hash(), "genres": per,
                               "bits_per_token": nats / tok / np.log(2), "tokens": tok,
                               "seconds": round(time.time() - t0, 1)}
        print(f"{name}: {out['models'][name]['bits_per_token']:.4f} bits/token "
              f"({out['models'][name]['seconds']} s)", flush=True)
    names = list(out["models"])
    print("\n| checkpoint | " + " | ".join(g for g, _ in genres) + " | all |")
    print("|---|" + "---:|" * (len(genres) + 1))
    for n in names:
        r = out["models"][n]
        print(f"| {n} | " + " | ".join(f"{r['genres'][g]['bits_per_token']:.4f}"
                                       for g, _ in genres) + f" | {r['bits_per_token']:.4f} |")
    if a.json:
        tmp = a.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1))
        tmp.replace(a.json)


if __name__ == "__main__":
    main()
