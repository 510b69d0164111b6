"""Attention dropout: applied to the attention weights in training, never in evaluation."""

import pytest
import torch
import torch.nn.functional as F

from mtvae.model import attention
from mtvae.model.attention import (
    Attention, Dropout, additive_mask, causal_mask, drop_mask, dropout_attention,
)


def make(dropout=0.5):
    torch.manual_seed(0)
    attn = Attention(d_model=16, n_heads=2, dropout=dropout)
    x = torch.randn(2, 6, 16)
    return attn, x, torch.arange(6)


@pytest.mark.parametrize("causal", [True, False])
def test_training_drops_attention_weights_and_evaluation_does_not(causal):
    attn, x, pos = make()
    prefix = (attn.project_kv(torch.randn(2, 3, 16)), torch.arange(-3, 0))  # a memory
    mask = causal_mask(6, 3, "cpu") if causal else None
    attn.train()
    a, _ = attn(x, pos, prefix, mask)
    b, _ = attn(x, pos, prefix, mask)
    assert not torch.allclose(a, b)
    attn.eval()
    a, _ = attn(x, pos, prefix, mask)
    b, _ = attn(x, pos, prefix, mask)
    assert torch.equal(a, b)
    with torch.no_grad():
        assert torch.allclose(a, make(dropout=0.0)[0].eval()(x, pos, prefix, mask)[0])


def test_no_dropout_in_training_when_it_is_zero():
    attn, x, pos = make(dropout=0.0)
    attn.train()
    assert torch.equal(attn(x, pos)[0], attn(x, pos)[0])


def masks():
    S, T = 5, 8  # a segment over a prefix of 3: prefix visible, causal inside the segment
    i, j = torch.arange(S)[:, None], torch.arange(T)[None, :]
    bar = torch.tensor([[0, 0, 1, 1, 1, -1, -1, -1], [0, 1, 1, 2, 2, 2, 2, -1]])
    own_bar = ((bar[:, :, None] == bar[:, None, :]) & (bar[:, None, :] >= 0)) | torch.eye(8,
                                                                                  dtype=bool)
    return [(S, T, (j < 3) | (j - 3 <= i)), (8, 8, own_bar[:, None]), (5, 8, None)]


@pytest.mark.parametrize("S,T,mask", masks())
def test_dropout_attention_is_sdpa_with_the_drawn_weights_dropped(S, T, mask, monkeypatch):
    torch.manual_seed(1)
    q = torch.randn(2, 2, S, 4, requires_grad=True)
    k, v = torch.randn(2, 2, T, 4), torch.randn(2, 2, T, 4)
    p = 0.25
    dropped = torch.rand(2, 2, S, T) < p
    monkeypatch.setattr(attention, "drop_mask", lambda shape, p_, device: dropped)
    bias = None if mask is None else additive_mask(mask)
    out = dropout_attention(q, k, v, bias, p)
    # reference: the softmax weights of the unfused SDPA, the same ones dropped
    bias = torch.zeros(S, T) if mask is None else torch.zeros(mask.shape).masked_fill(
        ~mask, float("-inf"))
    weights = (q @ k.transpose(-2, -1) / 2.0 + bias).softmax(-1)
    ref = weights.masked_fill(dropped, 0.0) @ v / (1 - p)
    torch.testing.assert_close(out, ref)
    g, = torch.autograd.grad(out.sum(), q)
    g_ref, = torch.autograd.grad(ref.sum(), q)
    torch.testing.assert_close(g, g_ref)
    # nothing dropped: exactly SDPA's result (up to the 1 / (1 - p) scale)
    monkeypatch.setattr(attention, "drop_mask", lambda shape, p_, device: torch.zeros(shape,
                                                                                       dtype=bool))
    torch.testing.assert_close(dropout_attention(q, k, v, bias, p) * (1 - p),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_drop_mask_rate_and_seeding():
    torch.manual_seed(0)
    m = drop_mask((3, 5, 7, 1001), 0.1, "cpu")  # not a multiple of 4 elements
    assert m.shape == (3, 5, 7, 1001) and m.dtype == torch.bool
    assert abs(m.float().mean().item() - 0.1) < 0.005
    torch.manual_seed(0)
    assert torch.equal(drop_mask((3, 5, 7, 1001), 0.1, "cpu"), m)


def test_dropout_drops_at_its_rate_scales_survivors_and_only_in_training():
    drop = Dropout(0.2)
    x = torch.randn(64, 128, 32)
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.2) < 0.01
    torch.testing.assert_close(y[kept], x[kept] / 0.8)
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # the default generator: seeded and resumed like torch's
    drop.eval()
    assert torch.equal(drop(x), x)


def test_the_causal_mask_shows_the_prefix_and_the_past():
    m = causal_mask(3, 2, "cpu")
    assert torch.equal(m == 0, torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]],
                                            dtype=torch.bool))
