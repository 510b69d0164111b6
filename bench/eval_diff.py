"""Two or more `mtvae evaluate` JSON files side by side: reconstruction, swap, control,
infilling and the prior samples' music statistics (overlap with the split), one row per
figure, one column per file. Prints a Markdown table.

    .venv/bin/python bench/eval_diff.py bench/results/eval_A.json bench/results/eval_B.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(d: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    lk = d["likelihood"]
    out["ELBO bits/token (N(0, I))"] = lk["bits_per_token"]
    if "learnt_prior" in lk:
        out["ELBO bits/token (learnt prior)"] = lk["learnt_prior"]["bits_per_token"]
    rec = d.get("reconstruction") or {}
    for mode in ("greedy", "sampled"):
        for k in ("chroma", "groove", "note_f1"):
            if mode in rec:
                out[f"{mode} {k}"] = rec[mode][k]
    if rec:
        out["swap: chroma follows donor"] = rec["latent_swap"]["chroma_follows_donor"]
        out["swap: groove follows donor"] = rec["latent_swap"]["groove_follows_donor"]
    for a in ("rhythm", "polyphony"):
        out[f"control rho {a}"] = d["control"][a]["spearman_rho"]
    inf = d.get("infilling") or {}
    for g in inf.get("gaps", []):
        r = inf[str(g)]
        out[f"infill {g} bars from the prior: note F1"] = r["infill"]["note_f1"]
        out[f"infill {g} bars from the prior: join NLL"] = r["infill"]["join_nll"]
        out[f"infill {g} bars: the original's join NLL"] = r["original"]["join_nll"]
        out[f"infill {g} bars, own latents: note F1"] = r["infill_own_latents"]["note_f1"]
    ms = d["music_statistics"]["mtvae"]
    for feat, v in ms.items():
        out[f"prior samples: {feat} overlap"] = v["overlap"]
    out["prior samples: mean overlap"] = sum(v["overlap"] for v in ms.values()) / len(ms)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    a = ap.parse_args()
    tables = [rows(json.loads(f.read_text())) for f in a.files]
    print("| figure | " + " | ".join(f.stem for f in a.files) + " |")
    print("|---|" + "---:|" * len(a.files))
    for k in tables[0]:
        print(f"| {k} | " + " | ".join(f"{t[k]:.3f}" if k in t else "—" for t in tables) + " |")


if __name__ == "__main__":
    main()
