"""Generation: a REMI grammar mask, sampling, and the bar-by-bar decoding loop.

Each new token costs one cached decoder step (``MTVAE.step``); the memory and compressed
memory are carried across segments. The grammar only lets well-formed REMI+ out
(``Bar TimeSig (Position [Tempo] (Program Pitch Velocity Duration)+)*``, positions rising
inside a bar and within the bar's length, drum pitches only on the drum program), and the
loop stops exactly when the requested number of bars is complete; the last bar always holds
at least one note, so the written MIDI has exactly that many bars. A plan may fix each new
bar's ``TimeSig`` token, so that a piece keeps one meter (or the bars of the song it
re-decodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

# the token kinds are defined once, with the vocabulary table; other modules import them here too
from .data.tokens import (  # noqa: F401
    BAR, DURATION, KINDS, NUM_KINDS, OTHER, PITCH, PITCHDRUM, POS_PER_BEAT, POSITION, PROGRAM,
    TEMPO, TIMESIG, VELOCITY, Vocab,
)

NEXT = {  # kinds allowed after each kind (None: the very start)
    None: {BAR}, BAR: {TIMESIG}, TIMESIG: {POSITION, BAR}, POSITION: {TEMPO, PROGRAM},
    TEMPO: {PROGRAM, POSITION, BAR}, PROGRAM: {PITCH, PITCHDRUM}, PITCH: {VELOCITY},
    PITCHDRUM: {VELOCITY}, VELOCITY: {DURATION}, DURATION: {PROGRAM, POSITION, BAR},
}


class Grammar:
    """The masks of a REMI+ vocabulary, built on its parsed table (``data.tokens.Vocab``).

    ``kind`` and ``value`` are the table's arrays; ``kind_masks[k]`` a bool tensor [V] of the
    tokens of kind k; ``positions`` each ``Position`` token's position (-1 for other tokens).
    """

    def __init__(self, vocab: dict[str, int] | Vocab):
        self.vocab = vocab if isinstance(vocab, Vocab) else Vocab(vocab)
        self.kind, self.value = self.vocab.kind, self.vocab.value
        self.kind_masks = {k: torch.from_numpy(self.kind == k) for k in range(NUM_KINDS)}
        self.positions = torch.from_numpy(np.where(self.kind == POSITION, self.value, -1))
        self.bar_id = int(self.vocab.ids(BAR)[0])


@dataclass
class SeqState:
    """Grammar state of one sequence."""

    last: int | None = None
    position: int = -1
    bar_len: int = 32
    drum: bool = False
    bars_opened: int = 0
    tokens_in_bar: int = 0
    notes_in_bar: int = 0
    done: bool = False

    def update(self, g: Grammar, token: int) -> None:
        k = int(g.kind[token])
        if k == BAR:
            self.bars_opened += 1
            self.position, self.tokens_in_bar, self.notes_in_bar = -1, 0, 0
        elif k == TIMESIG:
            self.bar_len = int(g.value[token])
        elif k == POSITION:
            self.position = int(g.value[token])
        elif k == PROGRAM:
            self.drum = int(g.value[token]) == -1
        elif k == DURATION:
            self.notes_in_bar += 1
        self.tokens_in_bar += 1
        self.last = k


@dataclass
class Sampling:
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    max_bar_tokens: int = 256  # a bar that grows longer is closed as soon as it may be
    guidance: float = 0.0  # latent guidance w: logits + w * (logits - logits with z = 0)


def allowed(g: Grammar, st: SeqState, bars: int, sampling: Sampling,
            timesig: int | None = None) -> torch.Tensor:
    """Bool mask [V] of the tokens the grammar allows next (``timesig``: the one ``TimeSig``
    token the current bar must take, or None for any)."""
    if st.last == BAR and timesig is not None:
        mask = torch.zeros_like(g.kind_masks[BAR])
        mask[timesig] = True
        return mask
    kinds = set(NEXT[st.last])
    if st.last == PROGRAM:
        kinds = {PITCHDRUM} if st.drum else {PITCH}
    last_bar = st.bars_opened >= bars
    if BAR in kinds and last_bar and st.notes_in_bar == 0:
        kinds.discard(BAR)  # the final bar must hold a note
    if BAR in kinds and st.tokens_in_bar >= sampling.max_bar_tokens and st.notes_in_bar:
        kinds = {BAR}
    mask = torch.zeros_like(g.kind_masks[BAR])
    for k in kinds:
        if k == POSITION:
            mask |= (g.positions > st.position) & (g.positions < st.bar_len)
        else:
            mask |= g.kind_masks[k]
    if not mask.any():  # no later position fits: close the bar
        mask = g.kind_masks[BAR].clone()
    return mask


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
    w = sampling.guidance if getattr(model, "encoder", None) is not None else 0.0

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
            mask = allowed(grammar, st, plans[i].bars, sampling,
                           plans[i].timesig(st.bars_opened - 1))
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
