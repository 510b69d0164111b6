"""Does latent guidance hold back a transfer's attribute shift? The song's own latents carry
its rhythm and polyphony, and guidance pulls the music towards them. For held-out songs (the
first ``--bars`` bars of evaluate's songs), ``transfer`` with a rhythm or polyphony shift
at each guidance value; reported: the mean class measured in the output minus the song's own
(the shift that arrived), beside the shift asked (after clipping to the classes). Prints a
table, writes JSON.

    .venv/bin/python bench/guidance_transfer.py RUN_DIR --data data/pn2 [--shift 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mtvae import MusicVAE
from mtvae import checkpoint as ck
from mtvae.data import tokens as T
from mtvae.evaluate import _songs, held_out_songs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--songs", type=int, default=16)
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--shift", type=int, default=3)
    ap.add_argument("--guidance", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--json", type=Path, default=Path("bench/results/guidance_transfer.json"))
    a = ap.parse_args()
    m = MusicVAE.load(a.run)
    edges = m.config.data["attribute_edges"]
    songs = held_out_songs(m, _songs(a.data, a.split), a.songs, a.bars, np.random.default_rng(0))
    encs = [m.read(p).first_bars(a.bars) for p in songs]
    top = m.n_classes - 1
    rows = []
    print("| attribute | guidance | shift asked (clipped) | shift measured | measured, no shift |\n"
          "|---|---:|---:|---:|---:|")
    for attr in ("rhythm", "polyphony"):
        for w in a.guidance:
            m.guidance = w
            asked, got, base = [], [], []
            for k, e in enumerate(encs):
                src = m.tokenizer.decode(e.ids.tolist())
                own = np.asarray(getattr(e, attr), dtype=np.int64)
                kw = {"rhythm_shift": a.shift} if attr == "rhythm" else {"polyphony_shift": a.shift}
                for shift, sink in ((0, base), (a.shift, got)):
                    out = m.transfer(src, bars=None, seed=k, **(kw if shift else {}))
                    enc = T.encode_score(out, m.tokenizer, m.tables)
                    vals = enc.rhythm if attr == "rhythm" else enc.polyphony
                    cls = T.attribute_classes(vals, edges[attr]).astype(np.int64)
                    n = min(len(cls), len(own))
                    sink.append(float(np.mean(cls[:n] - own[:n])))
                asked.append(float(np.mean(np.clip(own + a.shift, 0, top) - own)))
            row = {"attribute": attr, "guidance": w, "asked": float(np.mean(asked)),
                   "measured": float(np.mean(got)), "measured_no_shift": float(np.mean(base))}
            rows.append(row)
            print(f"| {attr} | {w:g} | {row['asked']:.2f} | {row['measured']:.2f} | "
                  f"{row['measured_no_shift']:.2f} |", flush=True)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    ck.atomic_write(a.json, lambda tmp: Path(tmp).write_text(json.dumps(
        {"run": str(a.run), "songs": len(encs), "bars": a.bars, "shift": a.shift, "rows": rows},
        indent=1)))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
