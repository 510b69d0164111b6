"""Compressive memory (Rae et al., 2019).

States that leave a layer's Transformer-XL memory are not dropped but compressed at ratio
``c`` by a strided 1-D convolution into the compressed memory. The compression is trained
only by the attention-reconstruction loss: attention of the current segment over the old
states and over their compressed form should agree. Everything else in that loss is
detached, and compressed states enter the next segment detached, so the language-model loss
never reaches the compression weights and the reconstruction loss reaches nothing else.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention


class Compressor(nn.Module):
    def __init__(self, d_model: int, ratio: int):
        super().__init__()
        self.ratio = ratio
        self.conv = nn.Conv1d(d_model, d_model, kernel_size=ratio, stride=ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, D] -> [B, N // ratio, D]
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


def content_kv(attn: Attention, norm: nn.LayerNorm, states: torch.Tensor) -> torch.Tensor:
    """Unrotated keys|values [B, N, 2D] of ``states`` through the layer's norm and key/value
    projection with their weights detached (a gradient reaches ``states`` only)."""
    d = states.shape[-1]
    x = F.layer_norm(states, (d,), norm.weight.detach(), norm.bias.detach())
    return F.linear(x, attn.qkv.weight.detach()[d:], attn.qkv.bias.detach()[d:])


def reconstruction_loss(attn: Attention, norm: nn.LayerNorm, queries: torch.Tensor,
                        old_kv: torch.Tensor, compressed_kv: torch.Tensor) -> torch.Tensor:
    """MSE between content attention (no positions) over the old states and over their
    compressed form, given their unrotated keys|values (``content_kv``; the old states' are
    the memory's cached ones)."""
    d = queries.shape[-1]
    q = F.linear(F.layer_norm(queries.detach(), (d,), norm.weight.detach(), norm.bias.detach()),
                 attn.qkv.weight.detach()[:d], attn.qkv.bias.detach()[:d])

    def attend(kv):
        k, v = kv.chunk(2, dim=-1)
        return F.scaled_dot_product_attention(attn._heads(q), attn._heads(k), attn._heads(v))

    target = attend(old_kv.detach()).detach()
    return F.mse_loss(attend(compressed_kv), target)
