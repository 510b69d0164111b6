"""The learnt-prior stage: ``train_prior(RUN_DIR, DATA_DIR)`` and ``mtvae prior``.

After training (``train --prior-steps N``, or later with ``mtvae prior``), the frozen encoder
writes the posteriors of 32 consecutive bars of up to 1000 training songs; a ``LatentPrior``
(``model/prior.py``) is fitted to samples of them, validated every 50 steps on 50 valid
songs, the best kept, and stopped after 10 validations without a better one. It is saved as
RUN_DIR/prior.safetensors with its config, the weights' hash and the validation figures.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import validate as V
from .config import PriorConfig, RunConfig
from .data.dataset import DataDir, SongStore
from .errors import UserError
from .latents import encode_bars
from .run import RunDir


def encode_songs(model, store: SongStore, songs, progress=None, max_bars: int | None = None,
                 seed: int = 0) -> list[dict]:
    """Posterior (mu, logvar) of the bars of ``songs`` (indices into ``store``), with the
    bars' classes and the song's genre: every bar, or a run of ``max_bars`` consecutive bars
    starting at a seeded random bar (encoding is the slow part; many songs beat long ones)."""
    out = []
    rng = np.random.default_rng(seed)
    for s in songs:
        ids, starts = np.asarray(store.ids(s)), np.asarray(store.bars(s))
        if len(starts) < 2:
            continue
        ends = np.r_[starts[1:], len(ids)]
        first = 0
        if max_bars is not None and len(starts) > max_bars:
            first = int(rng.integers(0, len(starts) - max_bars + 1))
        last = len(starts) if max_bars is None else min(first + max_bars, len(starts))
        mu, logvar = encode_bars(model, [ids[a:b] for a, b in zip(starts[first:last],
                                                                  ends[first:last])])
        r, p = store.attributes(s)
        out.append({"mu": mu.cpu(), "logvar": logvar.cpu(),
                    "rhythm": torch.from_numpy(np.asarray(r[first:last], dtype=np.int64)),
                    "polyphony": torch.from_numpy(np.asarray(p[first:last], dtype=np.int64)),
                    "genre": int(store.genre[s])})
        if progress:
            progress(1)
    return out


def _batch(songs: list[dict], n: int, chunk: int, gen: torch.Generator,
           genre_dropout: float = 0.0):
    """``n`` runs of at most ``chunk`` consecutive bars, z drawn from each bar's posterior,
    each given the genre "unknown" (0) instead of its song's with probability ``genre_dropout``.
    Returns z [n, T, D], rhythm, polyphony [n, T], genre [n], mask [n, T]."""
    picks = torch.randint(len(songs), (n,), generator=gen).tolist()
    T = min(chunk, max(len(songs[i]["mu"]) for i in picks))
    D = songs[0]["mu"].shape[1]
    z, r, p = torch.zeros(n, T, D), torch.zeros(n, T, dtype=torch.long), torch.zeros(n, T, dtype=torch.long)
    g, mask = torch.zeros(n, dtype=torch.long), torch.zeros(n, T)
    for j, i in enumerate(picks):
        s = songs[i]
        N = len(s["mu"])
        a = int(torch.randint(max(N - T, 0) + 1, (1,), generator=gen)) if N > T else 0
        k = min(T, N - a)
        mu, lv = s["mu"][a:a + k], s["logvar"][a:a + k]
        z[j, :k] = mu + (0.5 * lv).exp() * torch.randn(mu.shape, generator=gen)
        r[j, :k], p[j, :k], g[j], mask[j, :k] = s["rhythm"][a:a + k], s["polyphony"][a:a + k], s["genre"], 1
    if genre_dropout > 0:
        g[torch.rand(n, generator=gen) < genre_dropout] = 0
    return z, r, p, g, mask


def new_prior(pc: PriorConfig, songs: list[dict]):
    """A ``LatentPrior`` (seeded by ``pc.seed``) whose standardisation is the training
    latents' mean and spread (their means' variance plus the posteriors' mean variance)."""
    from .model.prior import LatentPrior

    torch.manual_seed(pc.seed)
    prior = LatentPrior(pc)
    allz = torch.cat([s["mu"] for s in songs])
    spread = (allz.var(0) + torch.cat([s["logvar"] for s in songs]).exp().mean(0)).sqrt()
    prior.z_mean.copy_(allz.mean(0))
    prior.z_std.copy_(spread.clamp(min=1e-3))
    return prior


def prior_step(prior, opt, songs: list[dict], pc: PriorConfig, gen: torch.Generator) -> torch.Tensor:
    """One training step of the prior on a batch of posterior samples; returns its loss
    (mean -log p(z) per bar)."""
    prior.train()
    z, r, p, g, mask = _batch(songs, pc.batch_size, pc.chunk_bars, gen, pc.genre_dropout)
    loss = prior.nll(z, r, p, g, mask).sum() / mask.sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
    opt.step()
    return loss


def prior_nll(prior, songs: list[dict], seed: int) -> tuple[float, float]:
    """Mean -log p(z) per bar of posterior samples of every bar of ``songs``: under the
    learnt prior and under N(0, I) (nats)."""
    gen = torch.Generator().manual_seed(seed)
    total = normal = bars = 0.0
    prior.eval()
    with torch.no_grad():
        for s in songs:
            z = s["mu"] + (0.5 * s["logvar"]).exp() * torch.randn(s["mu"].shape, generator=gen)
            nll = prior.nll(z[None], s["rhythm"][None], s["polyphony"][None],
                            torch.tensor([s["genre"]]))
            total += float(nll.sum())
            normal += float(0.5 * (z.pow(2) + math.log(2 * math.pi)).sum())
            bars += len(z)
    return total / max(bars, 1), normal / max(bars, 1)


def prior_config(cfg: RunConfig, **overrides) -> PriorConfig:
    """The learnt prior's config for a run: its latent size, classes and genres, and a GRU of
    4 units per latent dimension (at least 64: 256 for `small`, 64 for `tiny`)."""
    return PriorConfig(**{"d_latent": cfg.model.d_latent, "n_attr_classes": cfg.model.n_attr_classes,
                          "n_genres": cfg.model.n_genres, "genre_dropout": cfg.train.genre_dropout,
                          "d_hidden": max(64, 4 * cfg.model.d_latent)} | overrides)


def train_prior(run_dir, data_dir, steps: int | None = None, max_songs: int | None = None,
                device: str = "cpu", quiet: bool = False, seed: int = 0) -> dict:
    """Fit ``LatentPrior`` to the latents the run's encoder writes for the training songs of
    DATA_DIR (the DATA_DIR it was trained on) and save it as RUN_DIR/prior.safetensors."""
    data = data_dir if isinstance(data_dir, DataDir) else DataDir(data_dir)
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    run.require_weights()
    cfg = run.config
    if not cfg.model.use_vae:
        raise UserError(f"{run} was trained with --no-vae: it has no latents to fit a prior to")
    if data.vocab_size != cfg.model.vocab_size:
        raise UserError(f"{data} has another vocabulary than {run}: use the DATA_DIR "
                        "the run was trained on")
    pc = prior_config(cfg, **{k: v for k, v in
                              (("steps", steps), ("max_songs", max_songs), ("seed", seed)) if v is not None})
    dev = V.device(device)
    with run.lock("prior"):
        return fit_prior(run, data, pc, dev, quiet)


def fit_prior(run: RunDir, data: DataDir, pc: PriorConfig, device, quiet: bool) -> dict:
    """``train_prior`` once the arguments are checked and the run is locked."""
    from tqdm.auto import tqdm

    model = run.load_model(device=device)
    train_store, valid_store = data.split("train"), data.split("valid")
    order = np.random.default_rng(pc.seed).permutation(len(train_store))[:pc.max_songs]
    n_valid = min(len(valid_store), 50)
    bar = tqdm(total=len(order) + n_valid, desc="encode", unit="song", disable=quiet, leave=False)
    songs = encode_songs(model, train_store, order.tolist(), bar.update, pc.bars_per_song, pc.seed)
    valid = encode_songs(model, valid_store, range(n_valid), bar.update, pc.bars_per_song,
                         pc.seed + 1)
    bar.close()
    if not songs:
        raise UserError(f"{data}: no training song has two bars or more")
    del model
    prior = new_prior(pc, songs)
    opt = torch.optim.AdamW(prior.parameters(), lr=pc.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / pc.steps))))
    gen = torch.Generator().manual_seed(pc.seed)
    best, best_state, history, stale = float("inf"), None, [], 0
    every = min(50, max(pc.steps // 6, 1))  # validate often: it overfits within minutes
    bar = tqdm(total=pc.steps, desc="prior", unit="step", disable=quiet, leave=False)
    for step in range(1, pc.steps + 1):
        loss = prior_step(prior, opt, songs, pc, gen)
        sched.step()
        bar.update(1)
        if step % every == 0 or step == pc.steps:
            v, normal = prior_nll(prior, valid or songs[:50], pc.seed)
            history.append({"step": step, "train_nll": round(loss.item(), 3), "valid_nll": round(v, 3)})
            bar.set_postfix(valid=f"{v:.1f}")
            if v < best:
                best, stale = v, 0
                best_state = {k: t.detach().clone() for k, t in prior.state_dict().items()}
            else:
                stale += 1
                if stale >= 10:  # ten validations without a better one: it only overfits now
                    break
    bar.close()
    prior.load_state_dict(best_state)
    summary = {"valid_nll_per_bar": round(best, 3),
               "valid_nll_standard_normal": round(normal, 3),
               "train_songs": len(songs), "train_bars": sum(len(s["mu"]) for s in songs),
               "valid_songs": len(valid), "history": history}
    run.save_prior(prior, pc, summary)
    return summary
