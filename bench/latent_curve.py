"""The latent metrics along training: reconstruction from the posterior means (greedy and
sampled) and the latent swap, exactly as ``mtvae evaluate`` measures them (the same held-out
songs, bars and seed), for several runs or snapshots of one run. Prints a Markdown table and
writes JSON.

    .venv/bin/python bench/latent_curve.py runs/long2k-ae-s500 runs/long2k-ae ... \\
        --data data/pn2 [--bars 8] [--songs 16] [--json bench/results/latent_curve.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mtvae import MusicVAE
from mtvae import checkpoint as ck
from mtvae.evaluate import _songs, held_out_songs, reconstruction


def trio(d: dict) -> str:
    return f"{d['chroma']:.3f} / {d['groove']:.3f} / {d['note_f1']:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--songs", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--guidance", type=float, nargs="+", default=[0.0],
                    help="latent guidance w of the decoding (one row per value)")
    ap.add_argument("--json", type=Path, default=Path("bench/results/latent_curve.json"))
    a = ap.parse_args()
    rows = []
    for run in a.runs:
        m = MusicVAE.load(run)
        songs = held_out_songs(m, _songs(a.data, a.split), a.songs, a.bars,
                               np.random.default_rng(a.seed))  # evaluate's songs for this seed
        for w in a.guidance:
            m.guidance = w
            r = reconstruction(m, songs, a.bars, a.seed)
            name = run.name + (f" (guidance {w:g})" if w else "")
            rows.append({"run": name, "guidance": w, **r})
            print(f"{name}: greedy {trio(r['greedy'])}, swap "
                  f"{r['latent_swap']['chroma_follows_donor']:.0%}", flush=True)
    print("\n| run | greedy chroma / groove / note F1 | sampled chroma / groove / F1 | "
          "swap: chroma / groove follow donor |\n|---|---|---|---|")
    print(f"| floor: an unrelated song | {trio(rows[0]['floor'])} | | (≈ 50%) |")
    for r in rows:
        sw = r["latent_swap"]
        print(f"| {r['run']} | {trio(r['greedy'])} | {trio(r['sampled'])} | "
              f"{sw['chroma_follows_donor']:.0%} / {sw['groove_follows_donor']:.0%} |")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    ck.atomic_write(a.json, lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=1)))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
