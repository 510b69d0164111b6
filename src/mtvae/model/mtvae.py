"""MTVAE: the whole model. Bar encoder -> bar latents z; conditioning per bar
(z, rhythm class, polyphony class, genre); segment-wise decoder with compressive memory.

``forward`` takes a ``Batch`` (see ``mtvae.data.windows``) and returns the loss terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .attention import Dropout
from .decoder import Decoder, Memory
from .vae import BarEncoder, free_bits_kl, kl_per_dim


class MTVAE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.encoder = (
            BarEncoder(self.embed, cfg.enc_layers, d, cfg.n_heads, cfg.d_ff, cfg.d_latent,
                       cfg.dropout)
            if cfg.use_vae else None
        )
        self.rhythm_emb = nn.Embedding(cfg.n_attr_classes, cfg.d_attr)
        self.poly_emb = nn.Embedding(cfg.n_attr_classes, cfg.d_attr)
        self.genre_emb = nn.Embedding(max(cfg.n_genres, 1), cfg.d_attr)
        self.d_cond = (cfg.d_latent if cfg.use_vae else 0) + 3 * cfg.d_attr
        self.decoder = Decoder(cfg, self.d_cond)
        self.drop = Dropout(cfg.dropout)
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.apply(self._init)
        if self.encoder is not None:  # the posterior's width at the start
            half = self.encoder.posterior.out_features // 2
            nn.init.constant_(self.encoder.posterior.bias[half:], cfg.init_logvar)
        # conditioning starts at zero: z ~ N(mu, 1) projected at init would swamp the token
        # embeddings (std 0.02) and stall early learning; it grows as it becomes useful
        for proj in self.decoder.cond:
            nn.init.zeros_(proj.weight)
        self.head.weight = self.embed.weight  # tied input and output embeddings

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ pieces
    def encode(self, enc_tokens: torch.Tensor, enc_bar: torch.Tensor, n_bars: int):
        """Packed bars (see ``data.windows.pack_bars``) -> mu, logvar [R, n_bars, d_latent]."""
        return self.encoder(enc_tokens, enc_bar, n_bars)

    def bar_conditions(self, z, rhythm, polyphony, genre) -> torch.Tensor:
        """[B, NB, d_cond]: what every token of a bar is conditioned on."""
        parts = [] if z is None else [z]
        g = self.genre_emb(genre)[:, None].expand(-1, rhythm.shape[1], -1)
        parts += [self.rhythm_emb(rhythm), self.poly_emb(polyphony), g]
        return torch.cat(parts, dim=-1)

    def without_latent(self, cond: torch.Tensor) -> torch.Tensor:
        """A copy of ``cond`` (``bar_conditions``' layout: z first) with z's columns zeroed:
        what the decoder is given with no latent (latent guidance)."""
        out = cond.clone()
        if self.encoder is not None:
            out[..., :self.cfg.d_latent] = 0
        return out

    def decode(self, inputs: torch.Tensor, cond_tok: torch.Tensor, memory: Memory | None = None):
        """Teacher-forced decoding of [B, L] tokens, segment by segment, memory carried.

        Returns (logits [B, L, V], memory after the last full segment, mean recon loss).
        """
        S = self.cfg.seg_len
        memory = memory or self.decoder.empty_memory(inputs.shape[0], inputs.device)
        logits, recons = [], []
        for s in range(0, inputs.shape[1], S):
            x = self.drop(self.embed(inputs[:, s:s + S]))
            full = x.shape[1] == S
            h, memory, recon = self.decoder(x, cond_tok[:, s:s + S], memory, push=full)
            logits.append(self.head(h))
            recons.append(recon)
        return torch.cat(logits, dim=1), memory, torch.stack(recons).mean()

    # ------------------------------------------------------------------ cached decoding
    def step(self, token: torch.Tensor, cond: torch.Tensor, state):
        """token [B], cond [B, d_cond] -> (logits [B, V], state): one cached decoder step."""
        h, state = self.decoder.step(self.embed(token)[:, None], cond[:, None], state)
        if state.fast.head is None:  # transposed for the same reason as FastWeights
            state.fast.head = self.head.weight.detach().t().contiguous()
        return h[:, 0] @ state.fast.head, state

    def prefill(self, inputs: torch.Tensor, cond_tok: torch.Tensor):
        """Read a prompt (teacher-forced): whole segments at once, the rest step by step.

        Returns (logits after the last prompt token [B, V], DecodeState to continue from).
        """
        S = self.cfg.seg_len
        n_full = (inputs.shape[1] // S) * S
        memory = self.decoder.empty_memory(inputs.shape[0], inputs.device)
        logits = None
        if n_full:
            lg, memory, _ = self.decode(inputs[:, :n_full], cond_tok[:, :n_full], memory)
            logits = lg[:, -1]
        state = self.decoder.start(memory)
        for t in range(n_full, inputs.shape[1]):
            logits, state = self.step(inputs[:, t], cond_tok[:, t], state)
        return logits, state

    # ------------------------------------------------------------------ training
    def forward(self, batch, beta: float = 1.0, free_bits: float = 0.0,
                recon_weight: float = 1.0, sample: bool | None = None) -> dict:
        """Loss terms of a batch. ``sample``: draw z from q(z|x) (default: when training)."""
        sample = self.training if sample is None else sample
        mu = logvar = z = None
        if self.encoder is not None:
            mu, logvar = self.encode(batch.enc_tokens, batch.enc_bar, batch.bar_mask.shape[1])
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        cond_bars = self.bar_conditions(z, batch.rhythm, batch.polyphony, batch.genre)
        cond_tok = torch.gather(
            cond_bars, 1, batch.bar_idx[..., None].expand(-1, -1, cond_bars.shape[-1])
        )
        logits, _, recon = self.decode(batch.inputs, cond_tok)
        valid = batch.targets != self.cfg.pad_id
        n_tok = valid.sum().clamp(min=1)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), batch.targets.flatten(),
                             ignore_index=self.cfg.pad_id, reduction="sum") / n_tok
        out = {"ce": ce, "recon": recon, "n_tokens": n_tok, "logits": logits}
        loss = ce + recon_weight * recon
        if mu is not None:
            kl = kl_per_dim(mu, logvar)[batch.bar_mask]  # [N_bars, d_latent]
            n_bars = kl.shape[0]
            out["kl"] = kl.mean(0).sum()  # nats per bar
            out["mu"] = mu[batch.bar_mask].detach()
            out["kl_dims"] = kl.mean(0).detach()
            kl_cost = free_bits_kl(kl, free_bits) * n_bars / n_tok  # per target token
            out["kl_per_token"] = kl.sum() / n_tok
            # every bar's posterior and its z [B, NB, D] (for a learnt prior's KL; detached)
            out["posterior"] = (mu.detach(), logvar.detach(), z.detach())
            loss = loss + beta * kl_cost
        out["loss"] = loss
        return out

