"""The REMI+ grammar: which token may come next, as masks for generation and as a checker.

The one statement of what a well-formed mtvae token sequence is::

    (Bar TimeSig (Position [Tempo] (Program Pitch Velocity Duration)+)*)+

with positions rising inside a bar and inside the bar's length (``TimeSig``), drum pitches
(``PitchDrum``) exactly on the drum program (``Program_-1``), and no note that repeats a
pitch already struck at the same onset on the same program (no musician writes one; in a DAW
it plays as a flam or as silence). ``Grammar`` holds the masks of a vocabulary; ``SeqState``
follows one sequence; ``allowed`` is the mask generation samples through; ``errors`` checks a
whole sequence with the same rules, and tests cross-check it against MidiTok's own checker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .tokens import (
    BAR, DURATION, NUM_KINDS, PITCH, PITCHDRUM, POSITION, PROGRAM, TEMPO, TIMESIG, VELOCITY, Vocab,
)

NEXT = {  # kinds allowed after each kind (None: the very start)
    None: {BAR}, BAR: {TIMESIG}, TIMESIG: {POSITION, BAR}, POSITION: {TEMPO, PROGRAM},
    TEMPO: {PROGRAM, POSITION, BAR}, PROGRAM: {PITCH, PITCHDRUM}, PITCH: {VELOCITY},
    PITCHDRUM: {VELOCITY}, VELOCITY: {DURATION}, DURATION: {PROGRAM, POSITION, BAR},
}
MAX_BAR_TOKENS = 256  # a bar that grows longer is closed as soon as it may be


class Grammar:
    """The masks of a REMI+ vocabulary, built on its parsed table (``data.tokens.Vocab``).

    ``kind`` and ``value`` are the table's arrays; ``kind_masks[k]`` a bool tensor [V] of the
    tokens of kind k; ``positions`` each ``Position`` token's position (-1 for other tokens);
    ``pitch_ids[p]`` the ids of the ``Pitch`` and ``PitchDrum`` tokens of MIDI pitch p.
    """

    def __init__(self, vocab: dict[str, int] | Vocab):
        self.vocab = vocab if isinstance(vocab, Vocab) else Vocab(vocab)
        self.kind, self.value = self.vocab.kind, self.vocab.value
        self.kind_masks = {k: torch.from_numpy(self.kind == k) for k in range(NUM_KINDS)}
        self.positions = torch.from_numpy(np.where(self.kind == POSITION, self.value, -1))
        self.bar_id = int(self.vocab.ids(BAR)[0])
        self.pitch_ids: dict[int, list[int]] = {}
        for i in np.nonzero((self.kind == PITCH) | (self.kind == PITCHDRUM))[0]:
            self.pitch_ids.setdefault(int(self.value[i]), []).append(int(i))


@dataclass
class SeqState:
    """Grammar state of one sequence."""

    last: int | None = None
    position: int = -1
    bar_len: int = 32
    drum: bool = False
    program: int = 0
    bars_opened: int = 0
    tokens_in_bar: int = 0
    notes_in_bar: int = 0
    struck: set = field(default_factory=set)  # (program, pitch) struck at this onset
    done: bool = False

    def update(self, g: Grammar, token: int) -> None:
        k = int(g.kind[token])
        if k == BAR:
            self.bars_opened += 1
            self.position, self.tokens_in_bar, self.notes_in_bar = -1, 0, 0
            self.struck = set()
        elif k == TIMESIG:
            self.bar_len = int(g.value[token])
        elif k == POSITION:
            self.position = int(g.value[token])
            self.struck = set()
        elif k == PROGRAM:
            self.program = int(g.value[token])
            self.drum = self.program == -1
        elif k in (PITCH, PITCHDRUM):
            self.struck.add((self.program, int(g.value[token])))
        elif k == DURATION:
            self.notes_in_bar += 1
        self.tokens_in_bar += 1
        self.last = k


def allowed(g: Grammar, st: SeqState, bars: int, timesig: int | None = None,
            max_bar_tokens: int = MAX_BAR_TOKENS) -> torch.Tensor:
    """Bool mask [V] of the tokens the grammar allows next, for a sequence of ``bars`` bars
    (``timesig``: the one ``TimeSig`` token the current bar must take, or None for any)."""
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
    if BAR in kinds and st.tokens_in_bar >= max_bar_tokens and st.notes_in_bar:
        kinds = {BAR}
    mask = torch.zeros_like(g.kind_masks[BAR])
    for k in kinds:
        if k == POSITION:
            mask |= (g.positions > st.position) & (g.positions < st.bar_len)
        else:
            mask |= g.kind_masks[k]
    if st.last == PROGRAM:  # no pitch twice at one onset on one program
        for prog, pitch in st.struck:
            if prog == st.program:
                mask[g.pitch_ids.get(pitch, [])] = False
    if not mask.any():  # no later position fits: close the bar
        mask = g.kind_masks[BAR].clone()
    return mask


def errors(ids, g: Grammar) -> list[str]:
    """What is wrong with a whole token sequence under the rules above (empty: well-formed).
    Each error names the token's index and why."""
    out: list[str] = []
    st = SeqState()
    for i, t in enumerate(int(x) for x in ids):
        k = int(g.kind[t])
        if k not in NEXT[st.last]:
            out.append(f"{i}: kind {k} after kind {st.last}")
        elif k == POSITION and not st.position < int(g.value[t]) < st.bar_len:
            out.append(f"{i}: position {int(g.value[t])} after {st.position} in a bar of "
                       f"{st.bar_len}")
        elif k in (PITCH, PITCHDRUM) and (k == PITCHDRUM) != st.drum:
            out.append(f"{i}: {'drum' if k == PITCHDRUM else 'pitched'} note on program "
                       f"{st.program}")
        elif k in (PITCH, PITCHDRUM) and (st.program, int(g.value[t])) in st.struck:
            out.append(f"{i}: pitch {int(g.value[t])} struck twice at one onset on program "
                       f"{st.program}")
        st.update(g, t)
    return out


def duplicate_notes(ids, g: Grammar) -> tuple[int, int]:
    """(notes, notes that repeat a pitch already struck at the same onset on the same
    program) of a token sequence: what ``allowed`` keeps out of generated music."""
    st, notes, dup = SeqState(), 0, 0
    for t in (int(x) for x in ids):
        if g.kind[t] in (PITCH, PITCHDRUM):
            notes += 1
            dup += (st.program, int(g.value[t])) in st.struck
        st.update(g, t)
    return notes, dup
