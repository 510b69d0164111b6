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


def dropout_attention(q, k, v, mask: torch.Tensor | None, p: float) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)``, unfused:
    softmax weights dropped with probability ``p``, survivors scaled by 1 / (1 - p).
    ``mask``: bool, True where attention is allowed; every query must see at least one key
    (true of the causal mask and of the encoder's, which always allows a token itself)."""
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1))
    if mask is not None:  # additive bias: its backward is free, unlike masked_fill's
        bias = torch.zeros(mask.shape, dtype=scores.dtype, device=scores.device)
        scores = scores.add_(bias.masked_fill_(~mask, float("-inf")))
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

    def project_kv(self, x: torch.Tensor, positions: torch.Tensor):
        """Keys (rotated) and values of states ``x`` at ``positions``: the prefix's cache."""
        d = x.shape[-1]
        w, b = self.qkv.weight[d:], self.qkv.bias[d:]
        k, v = F.linear(x, w, b).chunk(2, dim=-1)
        cos, sin = self.rotary(positions)
        return apply_rotary(self._heads(k), cos, sin), self._heads(v)

    def step(self, x, cos_sin, kbuf, vbuf, fill: int, w):
        """Cached decoding of one token: its key/value go into the preallocated buffers at
        ``fill`` and it attends over everything before and including it (no copies).
        ``cos_sin``: the rotary terms of its position (computed once for all layers);
        ``w``: the layer's transposed weights (``decoder.LayerWeights``)."""
        qkv = torch.addmm(w.qkv_b, x[:, 0], w.qkv_w)[:, None]
        d = qkv.shape[-1] // 3
        cos, sin = cos_sin
        # rotate queries and keys in one call: heads 0..H-1 are q, H..2H-1 are k
        qk = apply_rotary(qkv[..., :2 * d].unflatten(-1, (2 * self.h, self.dh)).transpose(1, 2),
                          cos, sin)
        q = qk[:, :self.h]
        kbuf[:, :, fill:fill + 1] = qk[:, self.h:]
        vbuf[:, :, fill:fill + 1] = self._heads(qkv[..., 2 * d:])
        out = F.scaled_dot_product_attention(q, kbuf[:, :, :fill + 1], vbuf[:, :, :fill + 1])
        return torch.addmm(w.out_b, out.transpose(1, 2).flatten(1), w.out_w)[:, None]

    def forward(self, x, positions, prefix=None, causal=True, attn_mask=None):
        """Attend from ``x`` [B, S, D] over ``prefix`` (all visible) then ``x`` itself.

        prefix: (k, v) from ``project_kv`` or None. Returns (output, (k, v) of x).
        attn_mask: bool, broadcastable to [B, H, S, T], True where attention is allowed.
        """
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        cos, sin = self.rotary(positions)
        q = apply_rotary(self._heads(q), cos, sin)
        k = apply_rotary(self._heads(k), cos, sin)
        v = self._heads(v)
        own = (k, v)
        if prefix is not None:
            k = torch.cat([prefix[0], k], dim=2)
            v = torch.cat([prefix[1], v], dim=2)
        S, T = q.shape[2], k.shape[2]
        mask = None
        if causal:
            P = T - S
            i = torch.arange(S, device=x.device)[:, None]
            j = torch.arange(T, device=x.device)[None, :]
            mask = (j < P) | (j - P <= i)
        if attn_mask is not None:
            mask = attn_mask if mask is None else (mask & attn_mask)
        # attention dropout in training only (``step``, cached decoding, never drops)
        p = self.dropout if self.training else 0.0
        if p > 0 and q.device.type == "cpu":  # the fused CPU kernel takes no dropout
            out = dropout_attention(q, k, v, mask, p)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(out.transpose(1, 2).flatten(2)), own
