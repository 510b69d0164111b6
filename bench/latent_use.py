"""How much does the decoder read from its bar latents? Teacher-forced cross-entropy of held-out
windows with z = the posterior mean, with z = 0 (the prior's centre: what a decoder that
ignores z would do just as well with) and with each window's latents replaced by another
window's (bar for bar), each with the decoder's context as usual and with every bar decoded
alone (context dropout's mask: a bar sees only its own tokens). The gap to z = mu, in nats per
bar, is what the latent tells the decoder. Also the share of the posterior means' variance
that lies between windows rather than between the bars of one window. Prints a Markdown table and writes JSON.

    .venv/bin/python bench/latent_use.py runs/fim runs/lat-cd50 --data data/pn2 \
        [--windows 100] [--last] [--json bench/results/latent_use.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mtvae import MusicVAE
from mtvae import checkpoint as ck
from mtvae.data.dataset import load_split
from mtvae.data.windows import eval_batches, eval_windows


@torch.no_grad()
def measure(run: Path, data: Path, n_windows: int, weights: str = ck.BEST) -> dict:
    m = MusicVAE.load(run, weights=weights)
    model, cfg = m.model, m.config
    store = load_split(data, "test")
    length = cfg.train.segments * cfg.model.seg_len
    windows = eval_windows(store, length, n_windows)
    sums: dict[str, float] = {}
    tokens = bars = 0
    mus = []  # each window's posterior means [bars, d_latent]
    for batch in eval_batches(store, windows, length, 8, cfg.model.max_bar_len, cfg.model.pad_id):
        mu, _ = model.encode(batch.enc_tokens, batch.enc_bar, batch.bar_mask.shape[1])
        mus += [mu[i][batch.bar_mask[i]] for i in range(mu.shape[0])]
        other = mu.roll(1, dims=0)  # bar j of the previous window (its bar 0 where it had fewer)
        short = ~batch.bar_mask.roll(1, dims=0)
        other = torch.where(short[..., None], other[:, :1].expand_as(other), other)
        valid = batch.targets != cfg.model.pad_id
        n = int(valid.sum())
        tokens += n
        bars += int(batch.bar_mask.sum())
        for zname, z in (("mu", mu), ("zero", torch.zeros_like(mu)), ("other", other)):
            cond = model.bar_conditions(z, batch.rhythm, batch.polyphony, batch.genre)
            cond_tok = torch.gather(cond, 1, batch.bar_idx[..., None].expand(-1, -1, cond.shape[-1]))
            for ctx, alone in (("context", None), ("alone", torch.ones_like(batch.inputs, dtype=torch.bool))):
                logits, _, _ = model.decode(batch.inputs, cond_tok, bar_tok=batch.bar_idx, alone_tok=alone)
                ce = torch.nn.functional.cross_entropy(
                    logits.flatten(0, 1), batch.targets.flatten(), ignore_index=cfg.model.pad_id,
                    reduction="sum")
                key = f"{ctx}_{zname}"
                sums[key] = sums.get(key, 0.0) + float(ce)
    out = {"run": run.name, "weights": weights, "windows": len(windows), "tokens": tokens, "bars": bars,
           "context_dropout": cfg.train.context_dropout}
    # how alike the latents of one window's bars are: the share of the posterior means'
    # variance that lies between windows (0: bars as unrelated as bars of different songs)
    every = torch.cat(mus)
    within = torch.cat([m - m.mean(0) for m in mus if len(m) > 1]).pow(2).mean(0)
    out["between_window_share"] = float(1 - within.sum() / every.var(0, unbiased=False).sum())
    for k, v in sums.items():
        out[f"ce_{k}_nats_per_token"] = v / tokens
    for ctx in ("context", "alone"):
        for zname in ("zero", "other"):
            out[f"{ctx}_{zname}_minus_mu_nats_per_bar"] = (sums[f"{ctx}_{zname}"] - sums[f"{ctx}_mu"]) / bars
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--windows", type=int, default=100)
    ap.add_argument("--last", action="store_true",
                    help="the last weights of each run, not its best validation")
    ap.add_argument("--json", type=Path, default=Path("bench/results/latent_use.json"))
    a = ap.parse_args()
    rows = [measure(r, a.data, a.windows, ck.LAST if a.last else ck.BEST) for r in a.runs]
    print("| run | context dropout | CE with context: z = mu / 0 / another window's (nats/token) "
          "| gain from own z vs 0 / vs another's (nats/bar) | CE, every bar alone: mu / 0 / another's "
          "| gain alone vs 0 / vs another's (nats/bar) | variance of mu between windows |")
    print("|---|---:|---|---|---|---|---:|")
    for r in rows:
        c = " / ".join(f"{r[f'ce_context_{z}_nats_per_token']:.3f}" for z in ("mu", "zero", "other"))
        g = " / ".join(f"{r[f'context_{z}_minus_mu_nats_per_bar']:.1f}" for z in ("zero", "other"))
        ca = " / ".join(f"{r[f'ce_alone_{z}_nats_per_token']:.3f}" for z in ("mu", "zero", "other"))
        ga = " / ".join(f"{r[f'alone_{z}_minus_mu_nats_per_bar']:.1f}" for z in ("zero", "other"))
        print(f"| {r['run']} | {r['context_dropout']} | {c} | {g} | {ca} | {ga} "
              f"| {r['between_window_share']:.2f} |")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    ck.atomic_write(a.json, lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=1)))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
