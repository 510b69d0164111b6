"""Decoder: causal Transformer over segments with Transformer-XL memory and compressed memory.

Each layer attends over ``[compressed memory; memory; current segment]``. Before every layer
the bar conditioning is added ("in-attention", MuseMorphose). After a full segment, each
layer's inputs join its memory (detached: truncated back-propagation); what overflows the
memory is compressed at ratio ``c`` into the compressed memory, and the attention-
reconstruction loss for that compression is returned.

The memory keeps, beside each layer's states, their keys and values (unrotated, detached):
a token's are projected once, when it is in the segment, and a compressed slot's once, when
it is made; positions are applied by rotation where they are read. Re-projecting the
memory's ``M + C`` states in every layer of every segment was ~25% of the decoder's forward
arithmetic (and as much again in the backward pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .attention import causal_mask
from .memory import Compressor, content_kv, reconstruction_loss
from .vae import Block


@dataclass
class Memory:
    """Per layer: the memory's states [B, M, D] (layer inputs: what is compressed when they
    leave), and the unrotated keys|values [B, ·, 2D] of the memory (``mem_kv``) and of the
    compressed memory (``cmem_kv``), all detached."""

    mem: list[torch.Tensor]
    mem_kv: list[torch.Tensor]
    cmem_kv: list[torch.Tensor]

    @property
    def lengths(self) -> tuple[int, int]:
        return self.mem[0].shape[1], self.cmem_kv[0].shape[1]


class LayerWeights(NamedTuple):
    """One decoder layer's linear weights, transposed to [in, out], with their biases, and
    its two layer norms' weights and biases."""

    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor
    qkv_w: torch.Tensor
    qkv_b: torch.Tensor
    out_w: torch.Tensor
    out_b: torch.Tensor
    ff1_w: torch.Tensor
    ff1_b: torch.Tensor
    ff2_w: torch.Tensor
    ff2_b: torch.Tensor


@dataclass
class FastWeights:
    """A snapshot of the decoder's weights for cached decoding, each matrix stored transposed
    ([in, out], contiguous). One token at a time every linear layer is a matrix-vector
    product bound by reading the weights, and MKL reads this layout ~1.8x faster than
    nn.Linear's [out, in] (measured on this project's CPU: 44 vs 79 us per 256x1024 layer).
    Built once per generation: it does not follow later changes of the weights."""

    layers: list[LayerWeights]
    head: torch.Tensor | None = None  # [D, V], set by the model that owns the output head


@dataclass
class DecodeState:
    """Cached decoding: the memory, the current segment's layer inputs, and per layer a
    key/value buffer holding [compressed memory; memory] then the segment's tokens so far."""

    memory: Memory
    inputs: list[list[torch.Tensor]]  # per layer, one [B, 1, D] per token of the segment
    kvs: list[list[torch.Tensor]]  # per layer, each such token's unrotated key|value [B, 1, 2D]
    kbuf: list[torch.Tensor]  # per layer [B, H, P + seg_len, dh]
    vbuf: list[torch.Tensor]
    prefix_len: int  # P
    pos: int  # tokens in the current segment
    cond: torch.Tensor | None = None  # the last step's condition and its per-layer projections
    cond_proj: list | None = None
    fast: FastWeights | None = None


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig, d_cond: int):
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.blocks = nn.ModuleList(
            Block(d, cfg.n_heads, cfg.d_ff, cfg.dropout) for _ in range(cfg.dec_layers)
        )
        self.cond = nn.ModuleList(nn.Linear(d_cond, d) for _ in range(cfg.dec_layers))
        self.mem_len = cfg.effective_mem_len
        self.cmem_len = cfg.effective_cmem_len
        self.ratio = cfg.cmem_ratio
        self.compress = (
            nn.ModuleList(Compressor(d, cfg.cmem_ratio) for _ in range(cfg.dec_layers))
            if self.cmem_len else None
        )
        self.norm = nn.LayerNorm(d)

    def empty_memory(self, batch: int, device, dtype=torch.float32) -> Memory:
        z = torch.zeros(batch, 0, self.cfg.d_model, device=device, dtype=dtype)
        z2 = torch.zeros(batch, 0, 2 * self.cfg.d_model, device=device, dtype=dtype)
        n = len(self.blocks)
        return Memory([z] * n, [z2] * n, [z2] * n)

    def prefix_positions(self, memory: Memory, device) -> torch.Tensor:
        """Positions of [compressed memory; memory] relative to the segment's first token.

        The compressed memory covers the tokens just before the memory, ``ratio`` per slot;
        a slot sits at the centre of the tokens it summarises.
        """
        M, C = memory.lengths
        c = self.ratio
        cpos = -M - (C - torch.arange(C, device=device)) * c + (c - 1) / 2
        mpos = torch.arange(-M, 0, device=device)
        return torch.cat([cpos.float(), mpos.float()])

    @staticmethod
    def layer_prefix(layer: int, memory: Memory) -> torch.Tensor | None:
        """Unrotated keys|values [B, C + M, 2D] of a layer's [compressed memory; memory], or
        None when both are empty."""
        kv = torch.cat([memory.cmem_kv[layer], memory.mem_kv[layer]], dim=1)
        return kv if kv.shape[1] else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor, memory: Memory, push: bool = True):
        """One segment. x [B, S, D] embeddings, cond [B, S, d_cond].

        Returns (hidden [B, S, D], memory after this segment, reconstruction loss).
        """
        ppos = self.prefix_positions(memory, x.device)
        pos = torch.arange(x.shape[1], device=x.device)
        mask = causal_mask(x.shape[1], len(ppos), x.device)
        inputs, kvs = [], []
        for i, blk in enumerate(self.blocks):
            x = x + self.cond[i](cond)
            inputs.append(x)
            kv = self.layer_prefix(i, memory)
            x, own = blk(x, pos, None if kv is None else (kv, ppos), mask)
            kvs.append(own)
        recon = x.new_zeros(())
        if push:
            memory, recon = self.push(memory, inputs, kvs)
        return self.norm(x), memory, recon

    # ------------------------------------------------------------------ cached decoding
    @torch.no_grad()
    def fast_weights(self) -> FastWeights:
        def t(lin: nn.Linear):
            return lin.weight.t().contiguous(), lin.bias.detach()

        return FastWeights([
            LayerWeights(b.ln1.weight.detach(), b.ln1.bias.detach(), b.ln2.weight.detach(),
                         b.ln2.bias.detach(), *t(b.attn.qkv), *t(b.attn.out), *t(b.ff[0]),
                         *t(b.ff[2]))
            for b in self.blocks
        ])

    def start(self, memory: Memory, fast: FastWeights | None = None) -> DecodeState:
        """A decoding state whose next token opens a new segment after ``memory``."""
        ppos = self.prefix_positions(memory, memory.mem[0].device)
        P = len(ppos)
        kbufs, vbufs = [], []
        for i, blk in enumerate(self.blocks):
            B = memory.mem[i].shape[0]
            shape = (B, blk.attn.h, P + self.cfg.seg_len, blk.attn.dh)
            kb = memory.mem[i].new_empty(shape)
            vb = memory.mem[i].new_empty(shape)
            kv = self.layer_prefix(i, memory)
            if kv is not None:
                kb[:, :, :P], vb[:, :, :P] = blk.attn.rotated_prefix(kv, ppos)
            kbufs.append(kb)
            vbufs.append(vb)
        n = len(self.blocks)
        return DecodeState(memory, [[] for _ in range(n)], [[] for _ in range(n)], kbufs, vbufs,
                           P, 0, fast=fast or self.fast_weights())

    def step(self, x: torch.Tensor, cond: torch.Tensor, state: DecodeState):
        """One token per sequence: x [B, 1, D], cond [B, 1, d_cond] -> hidden [B, 1, D].

        When the segment is full its layer inputs are pushed into the memory exactly as
        ``forward`` does, so the result equals teacher-forced decoding of the same tokens.
        Each layer is ``Block.forward`` for one token written as a dozen tensor calls on the
        transposed weights (``FastWeights``): one token at a time, the time of a step is
        mostly reading weights and the key/value cache, and the calls' own overhead.
        """
        B, D = x.shape[0], x.shape[-1]
        attn = self.blocks[0].attn
        H, dh = attn.h, attn.dh
        cos, sin = attn.rotary(torch.full((1,), state.pos, device=x.device))
        half = dh // 2
        sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)  # rotate_half's signs
        fill = state.prefix_len + state.pos
        if state.cond is None or not torch.equal(cond, state.cond):  # a bar's condition is
            state.cond = cond  # fixed, so its projections are computed once per bar
            state.cond_proj = [proj(cond)[:, 0] for proj in self.cond]
        x = x[:, 0]
        for i, w in enumerate(state.fast.layers):
            x = x + state.cond_proj[i]
            state.inputs[i].append(x[:, None])
            qkv = torch.addmm(w.qkv_b, F.layer_norm(x, (D,), w.ln1_w, w.ln1_b), w.qkv_w)
            qk = qkv[:, :2 * D].view(B, 2 * H, dh)  # heads 0..H-1 are q, H..2H-1 are k
            qk = qk * cos + torch.cat([qk[..., half:], qk[..., :half]], dim=-1) * sin
            kb, vb = state.kbuf[i], state.vbuf[i]
            kb[:, :, fill] = qk[:, H:]
            vb[:, :, fill] = qkv[:, 2 * D:].view(B, H, dh)
            out = F.scaled_dot_product_attention(qk[:, :H, None], kb[:, :, :fill + 1],
                                                 vb[:, :, :fill + 1])
            x = torch.addmm(x, out.reshape(B, D), w.out_w).add_(w.out_b)
            h = F.gelu(torch.addmm(w.ff1_b, F.layer_norm(x, (D,), w.ln2_w, w.ln2_b), w.ff1_w))
            x = torch.addmm(x, h, w.ff2_w).add_(w.ff2_b)
            state.kvs[i].append(qkv[:, None, D:])
        state.pos += 1
        if state.pos == self.cfg.seg_len:
            memory, _ = self.push(state.memory, [torch.cat(xs, dim=1) for xs in state.inputs],
                                  [torch.cat(kv, dim=1) for kv in state.kvs], with_loss=False)
            cond_cache = (state.cond, state.cond_proj)
            state = self.start(memory, state.fast)
            state.cond, state.cond_proj = cond_cache
        return self.norm(x[:, None]), state

    def push(self, memory: Memory, inputs: list[torch.Tensor], kvs: list[torch.Tensor],
             with_loss: bool = True):
        """Append a segment's layer inputs and their keys|values (``Attention.forward``'s
        ``own``) to the memories; compress what overflows and project the new compressed
        slots' keys|values once."""
        if self.mem_len == 0:
            return memory, inputs[0].new_zeros(())
        mems, mem_kvs, cmem_kvs, losses = [], [], [], []
        for i, (layer_in, kv) in enumerate(zip(inputs, kvs)):
            full = torch.cat([memory.mem[i], layer_in.detach()], dim=1)
            full_kv = torch.cat([memory.mem_kv[i], kv.detach()], dim=1)
            cut = max(full.shape[1] - self.mem_len, 0)
            mems.append(full[:, cut:])
            mem_kvs.append(full_kv[:, cut:])
            ckv = memory.cmem_kv[i]
            if self.compress is not None and cut >= self.ratio:
                old = full[:, cut % self.ratio:cut]  # whole groups of `ratio` states
                comp = self.compress[i](old)
                blk = self.blocks[i]
                comp_kv = content_kv(blk.attn, blk.ln1, comp)  # gradient to the compressor only
                if with_loss:
                    losses.append(reconstruction_loss(blk.attn, blk.ln1, layer_in,
                                                      full_kv[:, cut % self.ratio:cut], comp_kv))
                ckv = torch.cat([ckv, comp_kv.detach()], dim=1)[:, -self.cmem_len:]
            cmem_kvs.append(ckv)
        recon = torch.stack(losses).mean() if losses else inputs[0].new_zeros(())
        return Memory(mems, mem_kvs, cmem_kvs), recon
