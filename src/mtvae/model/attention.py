"""Attention: multi-head attention with rotary positions over an optional visible prefix.

The decoder's prefix is ``[compressed memory; memory]`` (and, during cached decoding, the
earlier tokens of the current segment). Positions are relative to the current segment's
first token, so a memory slot keeps its meaning as the song moves on. The kernel is
``F.scaled_dot_product_attention``.

Attention dropout (the model's ``dropout``, on the attention weights) applies in training
only. SDPA's fused CPU kernel takes no dropout: with ``dropout_p > 0`` PyTorch falls back to
its unfused path, whose ``bernoulli_`` draws one random number per attention weight from the
scalar generator (MKL's vectorised one is used on Intel CPUs only); a ``small`` training step
(batch 8, 4 segments) then took 1.21-1.26x the time without attention dropout. On CPU,
``dropout_attention`` is the same unfused computation with its mask drawn from a quarter as
many random words: 1.11x (the rest is the cost of not being fused). On GPUs SDPA's fused
kernels take the dropout themselves. Measured by ``bench/attention_dropout.py`` (git, 6c67450).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Rotary(nn.Module):
    """Rotary position embedding (RoFormer) for real-valued positions."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ang = positions.float()[:, None] * self.inv_freq[None]
        ang = torch.cat([ang, ang], dim=-1)
        return ang.cos(), ang.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


def drop_mask(shape, p: float, device) -> torch.Tensor:
    """Bool mask of ``shape``, True with probability ``p`` (rounded to a multiple of 2**-16).

    Each 64-bit word of the default generator gives four 16-bit draws, so a mask costs a
    quarter of the generator calls of ``bernoulli_`` (one per element); seeded and saved with
    the rest of torch's RNG state like any other dropout."""
    n = math.prod(shape)
    words = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    return (words.view(torch.int16)[:n] < round(p * 65536) - 32768).view(shape)


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask comes from ``drop_mask`` on CPU (``bernoulli_`` draws one
    scalar random number per element: ~3% of a ``small`` training step)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        return x.masked_fill(drop_mask(x.shape, self.p, x.device), 0.0) * (1.0 / (1.0 - self.p))


def additive_mask(allowed: torch.Tensor) -> torch.Tensor:
    """A bool mask (True where attention is allowed) as the float bias attention adds to its
    scores (0 or -inf): built once per segment for all layers, and free in the backward pass
    (unlike ``masked_fill``)."""
    bias = torch.zeros(allowed.shape, device=allowed.device)
    return bias.masked_fill_(~allowed, float("-inf"))


def causal_mask(S: int, P: int, device) -> torch.Tensor:
    """Additive mask [S, P + S]: a segment of S tokens sees all P prefix slots and itself
    causally."""
    i = torch.arange(S, device=device)[:, None]
    j = torch.arange(P + S, device=device)[None, :]
    return additive_mask((j < P) | (j - P <= i))


def dropout_attention(q, k, v, bias: torch.Tensor | None, p: float) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)``, unfused:
    softmax weights dropped with probability ``p``, survivors scaled by 1 / (1 - p).
    ``bias``: additive (``additive_mask``); every query must see at least one key (true of
    the causal mask and of the encoder's, which always allows a token itself)."""
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1))
    if bias is not None:
        scores = scores.add_(bias)
    weights = scores.softmax(-1).masked_fill(drop_mask(scores.shape, p, q.device), 0.0)
    return torch.matmul(weights, v) * (1.0 / (1.0 - p))


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.h = n_heads
        self.dh = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.rotary = Rotary(self.dh)
        self.dropout = dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, H, T, dh]
        return x.unflatten(-1, (self.h, self.dh)).transpose(1, 2)

    def project_kv(self, x: torch.Tensor) -> torch.Tensor:
        """Keys and values of states ``x`` [B, T, D] -> [B, T, 2D], unrotated (rotary
        positions are applied where they are used: a memory's keys and values are projected
        once, when their tokens are the segment, and cached; see ``decoder.Memory``)."""
        d = x.shape[-1]
        return F.linear(x, self.qkv.weight[d:], self.qkv.bias[d:])

    def rotated_prefix(self, kv: torch.Tensor, positions: torch.Tensor):
        """(keys rotated to ``positions``, values), each [B, H, T, dh], of cached ``kv``."""
        k, v = kv.chunk(2, dim=-1)
        cos, sin = self.rotary(positions)
        return apply_rotary(self._heads(k), cos, sin), self._heads(v)

    def forward(self, x, positions, prefix=None, mask=None):
        """Attend from ``x`` [B, S, D] at ``positions`` over ``prefix`` then ``x`` itself.

        prefix: (kv [B, P, 2D] from ``project_kv``, positions [P]) or None.
        mask: additive (``additive_mask``, ``causal_mask``), broadcastable to [B, H, S, P + S],
        or None (all visible).
        Returns (output, unrotated key|value of x [B, S, 2D]: what a memory caches).
        """
        d = x.shape[-1]
        qkv = self.qkv(x)
        q, own = qkv[..., :d], qkv[..., d:]
        kv, kpos = own, positions
        if prefix is not None:
            kv = torch.cat([prefix[0], own], dim=1)
            kpos = torch.cat([prefix[1].float(), positions.float()])
        k, v = kv.chunk(2, dim=-1)
        cos, sin = self.rotary(kpos)  # queries take the last S rows: their own positions
        S, T = q.shape[1], k.shape[1]
        q = apply_rotary(self._heads(q), cos[T - S:], sin[T - S:])
        k = apply_rotary(self._heads(k), cos, sin)
        v = self._heads(v)
        # attention dropout in training only (``step``, cached decoding, never drops)
        p = self.dropout if self.training else 0.0
        if p > 0 and q.device.type == "cpu":  # the fused CPU kernel takes no dropout
            out = dropout_attention(q, k, v, mask, p)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(out.transpose(1, 2).flatten(2)), own
