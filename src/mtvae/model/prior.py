"""A learnt prior over a piece's bar latents: p(z_1..z_N) = prod_i p(z_i | z_<i, a_i, genre).

A VAE whose latents carry much (a KL target of tens of nats per bar) has an aggregate
posterior far from N(0, I): latents drawn from N(0, I), bar by bar, decode to bars that do
not sound like the data and do not belong together. This prior is fitted afterwards to the
latents the trained encoder writes for the training songs (a two-stage VAE): a GRU reads the
previous bars' latents and this bar's attribute classes and genre, and gives each bar's z a
mixture of diagonal Gaussians. Tensors in, tensors out; fitting it is ``mtvae.learnt_prior``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PriorConfig


class LatentPrior(nn.Module):
    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.cfg = cfg
        D, H, K = cfg.d_latent, cfg.d_hidden, cfg.n_mix
        self.rhythm_emb = nn.Embedding(cfg.n_attr_classes, cfg.d_attr)
        self.poly_emb = nn.Embedding(cfg.n_attr_classes, cfg.d_attr)
        self.genre_emb = nn.Embedding(max(cfg.n_genres, 1), cfg.d_attr)
        self.start = nn.Parameter(torch.zeros(D))  # stands for "the bar before the first"
        self.inp = nn.Linear(D + 3 * cfg.d_attr, H)
        self.rnn = nn.GRU(H, H, num_layers=cfg.n_layers, batch_first=True,
                          dropout=cfg.dropout if cfg.n_layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)  # a few hundred songs: it overfits without
        self.out = nn.Linear(H, K * (1 + 2 * D))  # mixture logits, means, log-variances
        # latents are standardised with the training latents' mean and scale (saved with the
        # weights), so the mixture starts near the data whatever the KL target was
        self.register_buffer("z_mean", torch.zeros(D))
        self.register_buffer("z_std", torch.ones(D))

    def _inputs(self, z_prev, rhythm, polyphony, genre):
        g = self.genre_emb(genre)[:, None].expand(-1, rhythm.shape[1], -1)
        x = torch.cat([z_prev, self.rhythm_emb(rhythm), self.poly_emb(polyphony), g], -1)
        return self.drop(F.gelu(self.inp(x)))

    def _mixture(self, h):
        K, D = self.cfg.n_mix, self.cfg.d_latent
        o = self.out(self.drop(h))
        logits = o[..., :K]
        mean, logvar = o[..., K:].unflatten(-1, (K, 2 * D)).chunk(2, dim=-1)
        return logits.log_softmax(-1), mean, logvar.clamp(-8, 4)

    def _prev(self, zs):
        """The standardised latents shifted one bar right, the start vector first."""
        start = self.start.expand(zs.shape[0], 1, -1)
        return torch.cat([start, zs[:, :-1]], 1)

    def nll(self, z, rhythm, polyphony, genre, mask=None) -> torch.Tensor:
        """-log p(z_i | z_<i, ...) of each bar, nats [B, N]. z [B, N, D]; rhythm, polyphony
        [B, N] classes; genre [B]; ``mask`` [B, N] (False: padding, its value is 0)."""
        zs = (z - self.z_mean) / self.z_std
        h, _ = self.rnn(self._inputs(self._prev(zs), rhythm, polyphony, genre))
        logw, mean, logvar = self._mixture(h)
        x = zs[..., None, :]
        comp = -0.5 * ((x - mean).pow(2) * (-logvar).exp() + logvar + math.log(2 * math.pi)).sum(-1)
        out = -(torch.logsumexp(logw + comp, -1)) + self.z_std.log().sum()  # density of z, not zs
        return out if mask is None else out * mask

    @torch.no_grad()
    def sample(self, rhythm, polyphony, genre, context=None, context_rhythm=None,
               context_polyphony=None, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """Latents of N new bars [B, N, D] given their classes [B, N] and genre [B], after the
        ``context`` bars' latents [B, C, D] (with their classes) when given. ``temperature``
        scales each component's standard deviation."""
        B, N = rhythm.shape
        h = None
        prev = self.start.expand(B, 1, -1)
        if context is not None and context.shape[1] > 0:
            cs = (context - self.z_mean) / self.z_std
            _, h = self.rnn(self._inputs(self._prev(cs), context_rhythm, context_polyphony, genre))
            prev = cs[:, -1:]
        out = []
        for i in range(N):
            o, h = self.rnn(self._inputs(prev, rhythm[:, i:i + 1], polyphony[:, i:i + 1], genre), h)
            logw, mean, logvar = self._mixture(o[:, 0])
            k = torch.multinomial(logw.exp().cpu(), 1, generator=generator).to(mean.device)
            pick = k[:, :, None].expand(-1, 1, mean.shape[-1])
            m, lv = mean.gather(1, pick)[:, 0], logvar.gather(1, pick)[:, 0]
            e = torch.randn(m.shape, generator=generator).to(m.device)
            prev = (m + temperature * (0.5 * lv).exp() * e)[:, None]
            out.append(prev)
        return torch.cat(out, 1) * self.z_std + self.z_mean
