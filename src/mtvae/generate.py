"""Generation: ``Sampling`` (how one call decodes), sampling a token, and the decoding loop.

Each new token costs one cached decoder step (``MTVAE.step``); the memory and compressed
memory are carried across segments. Every token is drawn through the grammar's mask
(``data.grammar``), so only well-formed REMI+ comes out, and the loop stops exactly when the
requested number of bars is complete; the last bar always holds at least one note, so the
written MIDI has exactly that many bars. A plan may fix each new
bar's ``TimeSig`` token, so that a piece keeps one meter (or the bars of the song it
re-decodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from . import validate as V
from .data.grammar import MAX_BAR_TOKENS, Grammar, SeqState, allowed
from .data.tokens import BAR

DEFAULT_GUIDANCE = 0.5  # Sampling.guidance when not given (docs/RESULTS.md, "Latents")


@dataclass(frozen=True)
class Sampling:
    """How one call decodes: passed whole from the CLI and the API to ``generate`` and
    recorded in settings.json.

    ``temperature`` (0: greedy), ``top_k``, ``top_p``: the usual filters. ``guidance``: latent
    guidance w, each token's logits moved away from those the decoder gives with z = 0 by w
    times the difference (classifier-free guidance with "no latent" as the unconditional
    model; 0 decodes plainly; each step decodes the batch twice, as one batch). None means
    the default: ``DEFAULT_GUIDANCE``, or 0 where a song's own latents are decoded with other
    attributes than their bars' (guidance pulls towards the latents, which hold the bars'
    own rhythm and polyphony; see ``resolved``). ``seed``: None draws one (``resolved``).
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    guidance: float | None = None
    seed: int | None = None
    max_bar_tokens: int = MAX_BAR_TOKENS

    def __post_init__(self):
        V.sampling(self.temperature, self.top_k, self.top_p)
        if self.guidance is not None:
            V.number("guidance", self.guidance, 0.0, 10.0)
        V.seed(self.seed)

    def resolved(self, other_attributes: bool = False) -> Sampling:
        """This sampling with its defaults filled in: the guidance (0 when latents from a
        song get ``other_attributes``) and a random seed."""
        w = self.guidance
        if w is None:
            w = 0.0 if other_attributes else DEFAULT_GUIDANCE
        seed = self.seed
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2**31)
        return replace(self, guidance=w, seed=seed)


def sample_token(logits: torch.Tensor, mask: torch.Tensor, s: Sampling,
                 gen: torch.Generator) -> int:
    logits = logits.float().masked_fill(~mask, float("-inf"))
    if s.temperature <= 0:
        return int(logits.argmax())
    logits = logits / s.temperature
    if s.top_k:
        kth = torch.topk(logits, min(s.top_k, int(mask.sum()))).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if s.top_p is not None and s.top_p < 1.0:
        sp, idx = probs.sort(descending=True)
        drop = sp.cumsum(0) - sp > s.top_p  # keep the smallest head whose mass reaches top_p
        sp[drop] = 0
        probs = torch.zeros_like(probs).scatter(0, idx, sp)
    return int(torch.multinomial(probs, 1, generator=gen))


@dataclass
class Plan:
    """What to generate for one sequence: conditions per bar, and an optional prompt."""

    cond_bars: torch.Tensor  # [n_prompt_bars + bars, d_cond]
    bars: int  # new bars to write
    prompt: list[int] = field(default_factory=list)  # whole bars of base tokens
    seed: int = 0
    timesigs: list[int] | None = None  # TimeSig token of each new bar (the last one repeats)

    def timesig(self, bar: int) -> int | None:
        if not self.timesigs:
            return None
        return self.timesigs[min(bar, len(self.timesigs) - 1)]


def context_bars(lengths: list[int], a: int, b: int, context: int, see_after: bool = True) -> list[int]:
    """The whole bars a plan that writes bars ``a..b-1`` again reads first (bar ``lengths``
    in tokens): the bars after the gap, up to half of ``context`` tokens (at least one), then
    the bars before it that fit in what is left after room for the gap itself (at least one);
    without ``see_after``, only bars before. Together they make one training window, as the
    model was trained to infill."""
    mean_bar = max(sum(lengths) / max(len(lengths), 1), 1.0)
    after, used = [], 0
    for j in range(b, len(lengths) if see_after else b):
        if after and used + lengths[j] > context // 2:
            break
        after.append(j)
        used += lengths[j]
    budget = context - used - (b - a) * mean_bar
    before: list[int] = []
    for j in range(a - 1, -1, -1):
        if before and lengths[j] > budget:
            break
        before.insert(0, j)
        budget -= lengths[j]
    return before + after


@torch.inference_mode()  # lighter dispatch than no_grad: each token is one small step
def generate(model, grammar: Grammar, plans: list[Plan], sampling: Sampling,
             use_cache: bool = True, progress=None) -> list[list[int]]:
    """Decode every plan in one batch; return each sequence's new tokens (starting at Bar)."""
    device = next(model.parameters()).device
    B = len(plans)
    gens = [torch.Generator().manual_seed(p.seed) for p in plans]
    states = [SeqState() for _ in plans]
    outs: list[list[int]] = [[] for _ in plans]
    prompt_bars = []
    for p, st in zip(plans, states):
        for t in p.prompt:
            st.update(grammar, t)
        prompt_bars.append(st.bars_opened)
        st.bars_opened = 0  # count only the bars we write
    if len({len(p.prompt) for p in plans}) != 1:
        raise ValueError("plans in one batch need prompts of equal length")

    def cond_for(i: int) -> torch.Tensor:  # condition of the bar the next input token is in
        b = prompt_bars[i] + states[i].bars_opened - 1
        return plans[i].cond_bars[min(b, len(plans[i].cond_bars) - 1)]

    # the first new token is always Bar: feed the prompt, then Bar
    first = torch.full((B, 1), grammar.bar_id, dtype=torch.long)
    history = torch.tensor([p.prompt for p in plans], dtype=torch.long).reshape(B, -1)
    history = torch.cat([history, first], dim=1).to(device)
    conds = []
    for i, p in enumerate(plans):
        bar_of = np.cumsum(grammar.kind[np.asarray(p.prompt + [grammar.bar_id])] == BAR) - 1
        conds.append(p.cond_bars[torch.from_numpy(np.clip(bar_of, 0, None))])
    cond_hist = torch.stack(conds).to(device)
    # latent guidance: a second copy of the batch decodes with z = 0, and each step's logits
    # move away from it by w (classifier-free guidance with "no latent" as the unconditional)
    w = (sampling.guidance or 0.0) if getattr(model, "encoder", None) is not None else 0.0

    def doubled(c: torch.Tensor) -> torch.Tensor:
        return torch.cat([c, model.without_latent(c)]) if w else c

    def guided(lg: torch.Tensor) -> torch.Tensor:
        return lg if not w else lg[:B] + w * (lg[:B] - lg[B:])

    history = torch.cat([history, history]) if w else history
    cond_hist = doubled(cond_hist)
    for i in range(B):
        states[i].update(grammar, grammar.bar_id)
        outs[i].append(grammar.bar_id)
    if use_cache:
        logits, state = model.prefill(history, cond_hist)
    else:
        logits = model.decode(history, cond_hist)[0][:, -1]
    logits = guided(logits)

    while not all(st.done for st in states):
        nxt = torch.empty(B, dtype=torch.long)
        for i, st in enumerate(states):
            if st.done:
                nxt[i] = outs[i][-1]
                continue
            mask = allowed(grammar, st, plans[i].bars, plans[i].timesig(st.bars_opened - 1),
                           sampling.max_bar_tokens)
            tok = sample_token(logits[i].cpu(), mask, sampling, gens[i])
            if grammar.kind[tok] == BAR and st.bars_opened >= plans[i].bars:
                st.done = True  # the requested bars are complete
                nxt[i] = outs[i][-1]
                continue
            st.update(grammar, tok)
            outs[i].append(tok)
            nxt[i] = tok
        if progress is not None:
            progress(sum(len(o) for o in outs))
        if all(st.done for st in states):
            break
        cond = doubled(torch.stack([cond_for(i) for i in range(B)]).to(device))
        nxt = torch.cat([nxt, nxt]) if w else nxt
        if use_cache:
            logits, state = model.step(nxt.to(device), cond, state)
        else:
            history = torch.cat([history, nxt[:, None].to(device)], dim=1)
            cond_hist = torch.cat([cond_hist, cond[:, None]], dim=1)
            logits = model.decode(history, cond_hist)[0][:, -1]
        logits = guided(logits)
    return outs
