"""VAE parts: the bar encoder (bidirectional Transformer, pooled to mu/logvar per bar) and
the KL term with free bits."""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention, Dropout, additive_mask


class Block(nn.Module):
    """Pre-norm Transformer block; ``causal`` and memory are decided by the caller."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = Dropout(dropout)

    def forward(self, x, positions, prefix=None, mask=None):
        """``mask``: additive (see ``Attention.forward``); the decoder passes its causal one."""
        a, own = self.attn(self.ln1(x), positions, prefix, mask)
        x = x + self.drop(a)
        return x + self.drop(self.ff(self.ln2(x))), own


class BarEncoder(nn.Module):
    """Each bar's tokens -> (mu, logvar) of its latent."""

    def __init__(self, embed: nn.Embedding, n_layers: int, d_model: int, n_heads: int,
                 d_ff: int, d_latent: int, dropout: float):
        super().__init__()
        self.embed = embed  # shared with the decoder
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.posterior = nn.Linear(d_model, 2 * d_latent)  # mu and logvar of the latent

    def forward(self, tokens: torch.Tensor, bar: torch.Tensor, n_bars: int):
        """tokens [R, Le] packed bars, bar [R, Le] bar index (-1 = padding)
        -> mu, logvar [R, n_bars, d_latent] (rows of bars with no tokens are meaningless)."""
        x = self.embed(tokens)
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        # attend only inside one's own bar; padding attends to itself (no empty softmax rows)
        same = bar[:, :, None] == bar[:, None, :]
        mask = additive_mask((same & (bar[:, None, :] >= 0))
                             | torch.eye(bar.shape[1], dtype=torch.bool, device=bar.device))
        for blk in self.blocks:
            x, _ = blk(x, pos, mask=mask[:, None])
        x = self.norm(x)
        R, _, D = x.shape
        idx = bar.clamp(min=0) + torch.arange(R, device=bar.device)[:, None] * n_bars
        keep = (bar >= 0).to(x.dtype)[..., None]
        sums = x.new_zeros(R * n_bars, D).index_add_(0, idx.flatten(), (x * keep).flatten(0, 1))
        counts = x.new_zeros(R * n_bars, 1).index_add_(0, idx.flatten(), keep.flatten(0, 1))
        pooled = (sums / counts.clamp(min=1)).view(R, n_bars, D)
        mu, logvar = self.posterior(pooled).chunk(2, dim=-1)
        return mu, logvar.clamp(-10, 10)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) of each latent dimension, elementwise."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def free_bits_kl(kl: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Sum over dimensions of max(mean KL of the dimension over bars, free_bits).

    kl: [N_bars, d_latent]. A dimension whose batch-mean KL is below ``free_bits`` nats costs
    exactly ``free_bits`` and sends no gradient, so the encoder is not pushed to collapse it.
    """
    return kl.mean(0).clamp(min=free_bits).sum()
