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


def reconstruction_loss(attn: Attention, norm: nn.LayerNorm, queries: torch.Tensor,
                        old: torch.Tensor, compressed: torch.Tensor) -> torch.Tensor:
    """MSE between content attention over ``old`` states and over ``compressed`` ones."""
    d = queries.shape[-1]
    w = attn.qkv.weight.detach()
    b = attn.qkv.bias.detach()
    ln = lambda x: F.layer_norm(x, (d,), norm.weight.detach(), norm.bias.detach())  # noqa: E731

    def attend(q, mem):
        k, v = F.linear(ln(mem), w[d:], b[d:]).chunk(2, dim=-1)
        return F.scaled_dot_product_attention(attn._heads(q), attn._heads(k), attn._heads(v))

    q = F.linear(ln(queries.detach()), w[:d], b[:d])
    target = attend(q, old.detach()).detach()
    return F.mse_loss(attend(q, compressed), target)
