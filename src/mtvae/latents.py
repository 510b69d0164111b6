"""Bar latents of token sequences: the one way bars become posteriors (``encode_bars``, for
the API and the learnt prior alike), and spherical interpolation between latents."""

from __future__ import annotations

import numpy as np
import torch

from .data.windows import pack_bars

BARS_PER_ROW = 16  # bars per encoder row: attention cost grows with the row's square


@torch.no_grad()
def encode_bars(model, bars: list[np.ndarray], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior (mu, logvar) [len(bars), d_latent] of each bar's tokens (the first
    ``max_bar_len`` of each, as in training), ``BARS_PER_ROW`` bars to an encoder row."""
    device = device or next(model.parameters()).device
    L = model.cfg.max_bar_len
    bars = [np.asarray(b)[:L] for b in bars]
    rows = [bars[i:i + BARS_PER_ROW] for i in range(0, len(bars), BARS_PER_ROW)]
    tokens, bar = pack_bars(rows, model.cfg.pad_id)
    mu, logvar = model.encode(tokens.to(device), bar.to(device), BARS_PER_ROW)
    return mu.flatten(0, 1)[:len(bars)], logvar.flatten(0, 1)[:len(bars)]


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of row vectors (linear where they are nearly parallel)."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.arccos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    lin = (1 - t) * a + t * b
    sph = torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b
    return torch.where(so.abs() < 1e-4, lin, sph)
