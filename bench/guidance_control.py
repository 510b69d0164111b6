"""Attribute control with and without latent guidance: Spearman's rho between the asked and
measured bar classes of prior samples (``mtvae evaluate``'s control, with more samples per
class than evaluate's default), for each guidance value. Prints a table, writes JSON.

    .venv/bin/python bench/guidance_control.py RUN_DIR [--per-class 4] [--guidance 0 0.5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtvae import MusicVAE
from mtvae import checkpoint as ck
from mtvae.evaluate import control


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--guidance", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--json", type=Path, default=Path("bench/results/guidance_control.json"))
    a = ap.parse_args()
    m = MusicVAE.load(a.run)
    rows = []
    print("| guidance | seed | rho rhythm | rho polyphony | bars |\n|---:|---:|---:|---:|---:|")
    for w in a.guidance:
        m.guidance = w
        for seed in a.seeds:
            c = control(m, a.per_class, a.bars, seed)
            rows.append({"guidance": w, "seed": seed, **c})
            print(f"| {w:g} | {seed} | {c['rhythm']['spearman_rho']:.3f} | "
                  f"{c['polyphony']['spearman_rho']:.3f} | {c['rhythm']['bars']} |", flush=True)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    ck.atomic_write(a.json, lambda tmp: Path(tmp).write_text(json.dumps(
        {"run": str(a.run), "per_class": a.per_class, "bars": a.bars, "rows": rows}, indent=1)))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
