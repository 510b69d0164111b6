"""Windows: training examples cut from songs, augmentation, and batching.

An example is ``L = segments × seg_len`` consecutive tokens of one song starting at a bar
line, plus every bar those tokens touch (for the encoder) and the bars' attributes. Which
song and which bar a batch uses is a pure function of (seed, step, rank), through torch's
``DistributedSampler`` for the song order, so a resumed or multi-process run sees exactly
the batches an uninterrupted one would.

Infilling: with probability ``infill`` a training window is rearranged (``arrange_infill``)
as the bars before a gap, the bars after it, the ``FILL`` marker, then the gap's 1 to 8 bars,
every token keeping the conditioning of the bar it came from; the decoder has read what
follows the gap before it writes the gap. Nothing else (the model, the encoder's bars, the
evaluation windows) changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

from .dataset import SongStore
from .tokens import PITCH, TEMPO, Vocab

MAX_GAP = 8  # the longest gap (bars) of an infilling example


@dataclass
class Batch:
    inputs: torch.Tensor  # [B, L] token ids
    targets: torch.Tensor  # [B, L] next tokens (pad where the song ended)
    bar_idx: torch.Tensor  # [B, L] bar of each input token, within the window
    enc_tokens: torch.Tensor  # [B, Le] the bars' tokens packed in one row (encoder input)
    enc_bar: torch.Tensor  # [B, Le] bar of each encoder token within the window, -1 = padding
    bar_mask: torch.Tensor  # [B, NB] real bars
    rhythm: torch.Tensor  # [B, NB] classes
    polyphony: torch.Tensor  # [B, NB]
    genre: torch.Tensor  # [B]

    def to(self, device) -> Batch:
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


class Augmenter:
    """Token-level transposition (``Pitch_`` tokens only: drums use ``PitchDrum_``) and
    tempo jitter (every ``Tempo_`` token moved by one class)."""

    def __init__(self, vocab: dict[str, int] | Vocab, transpose: int, tempo_jitter: float):
        v = vocab if isinstance(vocab, Vocab) else Vocab(vocab)
        n = len(v)
        self.transpose = transpose
        self.tempo_jitter = tempo_jitter
        is_pitch = v.kind == PITCH
        self.pitch = np.where(is_pitch, v.value, -1).astype(np.int32)
        pitch_id = {int(v.value[i]): int(i) for i in np.nonzero(is_pitch)[0]}
        self.lo, self.hi = min(pitch_id), max(pitch_id)
        self.shift_table = {}
        for k in range(-transpose, transpose + 1):
            t = np.arange(n, dtype=np.int32)
            for p, i in pitch_id.items():
                t[i] = pitch_id.get(p + k, -1)
            self.shift_table[k] = t
        tempo_ids = sorted((float(v.tempo[i]), int(i)) for i in v.ids(TEMPO))  # slowest first
        self.tempo_step = {}
        for d in (-1, 1):
            t = np.arange(n, dtype=np.int32)
            for j, (_, i) in enumerate(tempo_ids):
                t[i] = tempo_ids[min(max(j + d, 0), len(tempo_ids) - 1)][1]
            self.tempo_step[d] = t

    def __call__(self, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pitches = self.pitch[ids]
        pitches = pitches[pitches >= 0]
        if self.transpose and len(pitches):
            lo = max(-self.transpose, self.lo - int(pitches.min()))
            hi = min(self.transpose, self.hi - int(pitches.max()))
            k = int(rng.integers(lo, hi + 1)) if hi >= lo else 0
            if k:
                ids = self.shift_table[k][ids]
        if self.tempo_jitter and rng.random() < self.tempo_jitter:
            ids = self.tempo_step[1 if rng.random() < 0.5 else -1][ids]
        return ids


def arrange_infill(window: np.ndarray, rel_bars: np.ndarray, bar_ends: np.ndarray, fill_id: int,
                   rng: np.random.Generator, max_gap: int = MAX_GAP):
    """Rearrange a window for infilling: (tokens, bar of each token), or None when the
    window holds no whole bar.

    A gap of 1..``max_gap`` whole bars is drawn anywhere among the window's whole bars; the
    result is ``before + after + [FILL] + gap``, ``after`` being the whole bars after the gap
    (the window's last, cut bar is dropped, as at generation time the kept bars are whole).
    ``FILL`` takes the bar of the token before it.
    """
    n = len(window)
    whole = int(np.sum(bar_ends <= n))  # bars 0..whole-1 lie entirely in the window
    if whole < 1:
        return None
    g = int(rng.integers(1, min(max_gap, whole) + 1))
    g0 = int(rng.integers(0, whole - g + 1))
    gs, ge, end = int(rel_bars[g0]), int(bar_ends[g0 + g - 1]), int(bar_ends[whole - 1])
    bar_of = np.searchsorted(rel_bars, np.arange(n), side="right") - 1
    before_after = np.r_[np.arange(gs), np.arange(ge, end)]
    fill_bar = bar_of[before_after[-1]] if len(before_after) else g0
    order = np.r_[before_after, -1, np.arange(gs, ge)]
    order = order[:n]  # never longer than the window (FILL adds one token when no bar is cut)
    tokens = np.where(order >= 0, window[np.maximum(order, 0)], fill_id)
    bars = np.where(order >= 0, bar_of[np.maximum(order, 0)], fill_bar)
    return tokens.astype(window.dtype, copy=False), bars


def make_example(store: SongStore, song: int, bar: int, length: int, max_bar_len: int,
                 augment: Augmenter | None = None, rng: np.random.Generator | None = None,
                 infill: float = 0.0, fill_id: int = -1, genre_dropout: float = 0.0):
    """One window of ``length`` input tokens from ``song`` starting at bar ``bar``; with
    probability ``infill`` arranged for infilling (``arrange_infill``), with probability
    ``genre_dropout`` given the genre "unknown" (index 0) instead of the song's."""
    ids = np.asarray(store.ids(song))
    bars = np.asarray(store.bars(song))
    rhythm, poly = store.attributes(song)
    start = int(bars[bar])
    end = min(start + length + 1, len(ids))
    last_bar = int(np.searchsorted(bars, end - 1, side="right")) - 1
    bar_end = int(bars[last_bar + 1]) if last_bar + 1 < len(bars) else len(ids)
    chunk = ids[start:max(end, bar_end)]
    if augment is not None:
        chunk = augment(chunk, rng)
    window = chunk[:end - start]
    rel_bars = bars[bar:last_bar + 1] - start
    bar_tokens = [chunk[a:b][:max_bar_len] for a, b in
                  zip(rel_bars, list(rel_bars[1:]) + [len(chunk)])]
    pos = np.arange(min(length, len(window) - 1))
    bar_idx = np.searchsorted(rel_bars, pos, side="right") - 1
    if infill > 0 and fill_id >= 0 and rng.random() < infill:
        ends = np.r_[rel_bars[1:], len(chunk)]
        arranged = arrange_infill(window, rel_bars, ends, fill_id, rng)
        if arranged is not None:
            window, bar_of = arranged
            bar_idx = bar_of[:len(window) - 1]
    genre = int(store.genre[song])
    if genre_dropout > 0 and rng.random() < genre_dropout:
        genre = 0
    return {
        "window": window, "bar_idx": bar_idx, "bar_tokens": bar_tokens,
        "rhythm": np.asarray(rhythm[bar:last_bar + 1]),
        "polyphony": np.asarray(poly[bar:last_bar + 1]),
        "genre": genre,
        "fill_id": fill_id,  # never a target: the marker is given, not predicted
    }


def pack_bars(rows: list[list[np.ndarray]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of bars -> (tokens [R, Le], bar index [R, Le], -1 at padding).

    The encoder attends only inside a bar, so packing costs nothing in accuracy and saves
    the padding of every bar to the longest one.
    """
    Le = max(sum(len(b) for b in bars) for bars in rows)
    tokens = np.full((len(rows), Le), pad_id, dtype=np.int64)
    bar = np.full((len(rows), Le), -1, dtype=np.int64)
    for i, bars in enumerate(rows):
        at = 0
        for j, b in enumerate(bars):
            tokens[i, at:at + len(b)] = b
            bar[i, at:at + len(b)] = j
            at += len(b)
    return torch.from_numpy(tokens), torch.from_numpy(bar)


def collate(examples: list[dict], length: int, pad_id: int) -> Batch:
    B = len(examples)
    NB = max(len(e["bar_tokens"]) for e in examples)
    enc_tokens, enc_bar = pack_bars([e["bar_tokens"] for e in examples], pad_id)
    inputs = np.full((B, length), pad_id, dtype=np.int64)
    targets = np.full((B, length), pad_id, dtype=np.int64)
    bar_idx = np.zeros((B, length), dtype=np.int64)
    bar_mask = np.zeros((B, NB), dtype=bool)
    rhythm = np.zeros((B, NB), dtype=np.int64)
    poly = np.zeros((B, NB), dtype=np.int64)
    for i, e in enumerate(examples):
        w = e["window"]
        n = len(w) - 1
        inputs[i, :n] = w[:-1]
        targets[i, :n] = np.where(w[1:] == e.get("fill_id", -1), pad_id, w[1:])
        bar_idx[i, :n] = e["bar_idx"]
        bar_idx[i, n:] = e["bar_idx"][-1] if n else 0
        k = len(e["bar_tokens"])
        bar_mask[i, :k] = True
        rhythm[i, :k] = e["rhythm"]
        poly[i, :k] = e["polyphony"]
    genre = np.asarray([e["genre"] for e in examples], dtype=np.int64)
    t = torch.from_numpy
    return Batch(t(inputs), t(targets), t(bar_idx), enc_tokens, enc_bar, t(bar_mask), t(rhythm),
                 t(poly), t(genre))


class TrainWindows:
    """Batch ``step`` of rank ``rank``: songs in DistributedSampler order, a random bar each."""

    def __init__(self, store: SongStore, length: int, batch_size: int, max_bar_len: int,
                 pad_id: int, seed: int = 0, rank: int = 0, world: int = 1,
                 augment: Augmenter | None = None, infill: float = 0.0, fill_id: int = -1,
                 genre_dropout: float = 0.0):
        self.store, self.length, self.batch_size = store, length, batch_size
        self.infill, self.fill_id, self.genre_dropout = infill, fill_id, genre_dropout
        self.max_bar_len, self.pad_id, self.seed, self.augment = max_bar_len, pad_id, seed, augment
        self.rank = rank
        self.sampler = DistributedSampler(range(len(store)), num_replicas=world, rank=rank,
                                          shuffle=True, seed=seed)
        self.per_epoch = len(self.sampler)
        self._epoch, self._order = -1, []

    def _song(self, g: int) -> int:
        epoch, off = divmod(g, self.per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch, self._order = epoch, list(self.sampler)
        return self._order[off]

    def batch(self, step: int) -> Batch:
        examples = []
        for j in range(self.batch_size):
            song = self._song(step * self.batch_size + j)
            rng = np.random.default_rng([self.seed, step, self.rank, j])
            bars = np.asarray(self.store.bars(song))
            n = len(self.store.ids(song))
            # any bar from which a full window fits (or bar 0 for a short song)
            last = max(int(np.searchsorted(bars, n - self.length - 1, side="right")) - 1, 0)
            bar = int(rng.integers(0, last + 1))
            examples.append(make_example(self.store, song, bar, self.length, self.max_bar_len,
                                         self.augment, rng, self.infill, self.fill_id,
                                         self.genre_dropout))
        return collate(examples, self.length, self.pad_id)


def eval_windows(store: SongStore, length: int, limit: int | None = None,
                 songs=None) -> list[tuple[int, int]]:
    """Consecutive windows through every song (or those of ``songs``; each window starts at a
    bar line): (song, bar).

    With ``limit``, an evenly spaced subset of them, always the same.
    """
    out = []
    for song in (range(len(store)) if songs is None else songs):
        bars = np.asarray(store.bars(song))
        b = 0
        while b < len(bars):
            out.append((song, b))
            nxt = int(np.searchsorted(bars, bars[b] + length, side="left"))
            b = max(nxt, b + 1)
    if limit is not None and len(out) > limit:
        keep = np.linspace(0, len(out) - 1, limit).round().astype(int)
        out = [out[k] for k in keep]
    return out


def eval_batches(store: SongStore, windows: list[tuple[int, int]], length: int, batch_size: int,
                 max_bar_len: int, pad_id: int):
    for i in range(0, len(windows), batch_size):
        ex = [make_example(store, s, b, length, max_bar_len) for s, b in windows[i:i + batch_size]]
        yield collate(ex, length, pad_id)


def steps_per_epoch(store: SongStore, batch_size: int, world: int = 1) -> int:
    return math.ceil(len(store) / world / batch_size)
