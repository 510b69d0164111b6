"""The table of issue #10: for each run evaluated by ``mtvae evaluate --json``, what its latent
carries (greedy and sampled reconstruction, floor, latent swap, KL, active units), control,
likelihood and the music statistics of its prior samples. Prints Markdown and writes JSON.

    .venv/bin/python bench/latent_table.py bench/results/eval_lat-*.json \
        [--names base,all,...] [--json bench/results/latent_table.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def row(r: dict) -> dict:
    lk, rc, ct = r["likelihood"], r.get("reconstruction") or {}, r["control"]
    out = {
        "run": Path(r["run_dir"]).name,
        "bits_per_token": lk["bits_per_token"],
        "recon_nats_per_token": lk["reconstruction_nats_per_token"],
        "kl_nats_per_token": lk["kl_nats_per_token"],
        "kl_nats_per_bar": lk["kl_nats_per_bar"],
        "active_units": f"{lk.get('active_units', 0)}/{lk.get('latent_dims', 0)}",
        "rho_rhythm": ct["rhythm"]["spearman_rho"],
        "rho_polyphony": ct["polyphony"]["spearman_rho"],
    }
    for mode in ("greedy", "sampled", "floor"):
        for k in ("chroma", "groove", "note_f1"):
            out[f"{mode}_{k}"] = rc.get(mode, {}).get(k, float("nan"))
    sw = rc.get("latent_swap", {})
    out["swap_chroma"] = sw.get("chroma_follows_donor", float("nan"))
    out["swap_groove"] = sw.get("groove_follows_donor", float("nan"))
    ms = r["music_statistics"]["mtvae"]
    out["overlap"] = {k: v["overlap"] for k, v in ms.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--json", type=Path, default=Path("bench/results/latent_table.json"))
    a = ap.parse_args()
    rows = [row(json.loads(f.read_text())) for f in a.files]
    print("| run | greedy chroma / groove / F1 | sampled chroma / groove / F1 | floor chroma / groove / F1 "
          "| swap: chroma / groove follow donor | KL nats/bar | active | ρ rhythm / polyphony "
          "| test bits/token (ELBO) | recon nats/token | KL nats/token |")
    print("|---|---|---|---|---|---:|---:|---|---:|---:|---:|")
    for x in rows:
        def three(m):
            return f"{x[m + '_chroma']:.3f} / {x[m + '_groove']:.3f} / {x[m + '_note_f1']:.3f}"
        print(f"| {x['run']} | {three('greedy')} | {three('sampled')} | {three('floor')} "
              f"| {x['swap_chroma']:.0%} / {x['swap_groove']:.0%} | {x['kl_nats_per_bar']:.1f} "
              f"| {x['active_units']} | {x['rho_rhythm']:.2f} / {x['rho_polyphony']:.2f} "
              f"| {x['bits_per_token']:.3f} | {x['recon_nats_per_token']:.3f} | {x['kl_nats_per_token']:.3f} |")
    feats = list(rows[0]["overlap"])
    print("\n| prior samples: overlap with the test split | " + " | ".join(x["run"] for x in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for f in feats:
        print(f"| {f} | " + " | ".join(f"{x['overlap'][f]:.3f}" for x in rows) + " |")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(rows, indent=1))
    print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
