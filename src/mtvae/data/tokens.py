"""Tokens: a score becomes miditok REMI+ ids, bar boundaries and two bar attributes.

REMI with programs in one stream, tempos and time signatures. Every bar starts with a ``Bar``
token (and, in this configuration, a ``TimeSig`` token), so bar boundaries are the indices of
the ``Bar`` tokens. Positions run at 8 per beat, a beat being the time signature's
denominator note, so a bar of n/d has ``8 * n`` positions.

Bar attributes (MuseMorphose's), computed from the tokens so that they describe exactly what
the model sees and can be measured the same way on generated music:

* rhythmic intensity — the share of the bar's sub-beats (4 per beat) that hold an onset;
* polyphony — the mean number of notes sounding at the bar's onsets (notes held over from
  earlier bars count).

Both become 8 classes through quantile edges computed on the train split.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic
from miditok import REMI, TokenizerConfig

from ..errors import UserError

NUM_CLASSES = 8
POS_PER_BEAT = 8
SUBBEATS_PER_BEAT = 4

TOKENIZER_PARAMS = dict(
    pitch_range=(21, 109),
    beat_res={(0, 4): 8, (4, 12): 4},
    num_velocities=32,
    # FILL: the infilling marker (training arrangement in ``windows.arrange_infill``)
    special_tokens=["PAD", "BOS", "EOS", "MASK", "FILL"],
    use_chords=False,
    use_rests=False,
    use_tempos=True,
    use_time_signatures=True,
    use_programs=True,
    one_token_stream_for_programs=True,
    num_tempos=32,
    tempo_range=(40, 250),
)


FILL = "FILL_None"  # the marker token between the bars around a gap and the gap's bars


def make_tokenizer() -> REMI:
    """The project's REMI+ tokenizer."""
    return REMI(TokenizerConfig(**TOKENIZER_PARAMS))


def load_tokenizer(folder):
    """The tokenizer saved in a RUN_DIR or DATA_DIR (``tokenizer.json``); a missing or
    damaged file is one line."""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{path} is missing")
    try:
        return REMI(params=path)
    except Exception as e:  # noqa: BLE001 - miditok raises several kinds
        raise UserError(f"{path} is damaged ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:120]})") from None


@dataclass
class EncodedSong:
    ids: np.ndarray  # int16 base-vocabulary ids
    bar_starts: np.ndarray  # int32, index of each bar's first token
    rhythm: np.ndarray  # float32 per bar, rhythmic intensity in [0, 1]
    polyphony: np.ndarray  # float32 per bar, mean notes sounding at an onset


# ----------------------------------------------------------------------------- vocabulary

# token kinds, the one list every module uses (the grammar, the attributes, augmentation)
OTHER, BAR, TIMESIG, POSITION, TEMPO, PROGRAM, PITCH, PITCHDRUM, VELOCITY, DURATION = range(10)
NUM_KINDS = 10
KINDS = {"Bar": BAR, "TimeSig": TIMESIG, "Position": POSITION, "Tempo": TEMPO,
         "Program": PROGRAM, "Pitch": PITCH, "PitchDrum": PITCHDRUM, "Velocity": VELOCITY,
         "Duration": DURATION}


class Vocab:
    """Every token of a REMI+ base vocabulary parsed once, as arrays indexed by token id.

    The single place where token strings (``TimeSig_3/4``, ``Duration_1.2.8`` ...) are read;
    the attribute pass, the generation grammar and augmentation all use these arrays.

    * ``kind[id]``: one of the kinds above (``OTHER`` for special tokens such as ``PAD``);
    * ``value[id]``: ``TimeSig`` positions per bar (numerator × ``POS_PER_BEAT``),
      ``Position`` the position in the bar, ``Program`` the program (-1: drums),
      ``Pitch`` / ``PitchDrum`` the MIDI pitch, ``Velocity`` the velocity, ``Duration`` the
      length in positions; 0 for other kinds;
    * ``tempo[id]``: a ``Tempo`` token's quarter notes per minute (0.0 for other kinds);
    * ``kind_list`` / ``value_list``: the same as Python lists, for per-token loops.

    Built from a ``{token: id}`` dict or from a tokenizer (its base vocabulary).
    """

    def __init__(self, vocab: Mapping[str, int] | REMI):
        if not isinstance(vocab, Mapping):
            vocab = vocab.vocab  # a tokenizer: its base vocabulary
        n = max(vocab.values()) + 1
        self.names = dict(vocab)  # token string -> id
        self.kind = np.full(n, OTHER, dtype=np.int64)
        self.value = np.zeros(n, dtype=np.int64)
        self.tempo = np.zeros(n, dtype=np.float64)
        for tok, i in vocab.items():
            name, _, val = tok.partition("_")
            k = KINDS.get(name, OTHER)
            self.kind[i] = k
            if k == TIMESIG:
                self.value[i] = int(val.split("/")[0]) * POS_PER_BEAT
            elif k in (POSITION, PROGRAM, PITCH, PITCHDRUM, VELOCITY):
                self.value[i] = int(val)
            elif k == DURATION:
                beats, frac, res = (int(x) for x in val.split("."))
                self.value[i] = round((beats + frac / res) * POS_PER_BEAT)
            elif k == TEMPO:
                self.tempo[i] = float(val)
        self.kind_list = self.kind.tolist()
        self.value_list = self.value.tolist()

    def __len__(self) -> int:
        return len(self.kind)

    def ids(self, kind: int) -> np.ndarray:
        """Ids of every token of one kind, ascending."""
        return np.nonzero(self.kind == kind)[0]


TokenTables = Vocab  # the name the attribute pass and its callers know it by


def bar_attributes(ids, tables: Vocab) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bar starts, rhythmic intensity and polyphony of a base-id sequence."""
    kind, value = tables.kind_list, tables.value_list
    bar_starts: list[int] = []
    bar_len: list[int] = []  # positions per bar
    onsets: list[list[tuple[int, int]]] = []  # per bar: (global position, duration)
    bar_origin = 0  # global position of the current bar's start
    pos = 0
    pending = False  # a Pitch was seen; its Duration is still to come
    for i, t in enumerate(ids):
        k = kind[t]
        if k == BAR:
            if bar_starts:
                bar_origin += bar_len[-1]
            bar_starts.append(i)
            bar_len.append(4 * POS_PER_BEAT)  # 4/4 until a TimeSig says otherwise
            onsets.append([])
            pos = 0
        elif k == TIMESIG and bar_starts:
            bar_len[-1] = value[t]
        elif k == POSITION:
            pos = value[t]
        elif k == PITCH or k == PITCHDRUM:
            pending = True
        elif k == DURATION and pending and bar_starts:
            onsets[-1].append((bar_origin + pos, max(value[t], 1)))
            pending = False

    n = len(bar_starts)
    origins = np.concatenate([[0], np.cumsum(bar_len)]).tolist()  # global start of each bar
    sub = POS_PER_BEAT // SUBBEATS_PER_BEAT
    rhythm = np.zeros(n, dtype=np.float32)
    poly = np.zeros(n, dtype=np.float32)
    active: list[tuple[int, int]] = []  # notes that may still sound: (start, end)
    for b in range(n):
        notes = onsets[b]
        if notes:
            starts = sorted({p for p, _ in notes})
            active.extend((p, p + d) for p, d in notes)
            counts = [sum(1 for s, e in active if s <= t < e) for t in starts]
            poly[b] = sum(counts) / len(counts)
            n_sub = max(bar_len[b] // sub, 1)
            rhythm[b] = len({(p - origins[b]) // sub for p in starts}) / n_sub
        active = [(s, e) for s, e in active if e > origins[b + 1]]
    return np.asarray(bar_starts, dtype=np.int32), rhythm, poly


def bar_timesigs(ids, bar_starts, tables: Vocab) -> np.ndarray:
    """The ``TimeSig`` token that follows each bar's ``Bar`` token (-1 where there is none)."""
    ids = np.asarray(ids)
    if len(ids) == 0:
        return np.full(len(bar_starts), -1, dtype=np.int64)
    tok = ids[np.minimum(np.asarray(bar_starts, dtype=np.int64) + 1, len(ids) - 1)].astype(np.int64)
    return np.where(tables.kind[tok] == TIMESIG, tok, -1)


def bar_lengths_in_beats(ids, bar_starts, tables: Vocab) -> np.ndarray:
    """Length of each bar in beats, from its ``TimeSig`` token (4 without one)."""
    ts = bar_timesigs(ids, bar_starts, tables)
    return np.where(ts >= 0, tables.value[np.maximum(ts, 0)] / POS_PER_BEAT, 4.0)


def meter_counts(songs, tables: Vocab) -> dict[str, int]:
    """Bars per ``TimeSig`` token over (ids, bar_starts) songs, most common first."""
    from collections import Counter

    c: Counter = Counter()
    for ids, starts in songs:
        ts = bar_timesigs(ids, starts, tables)
        c.update(ts[ts >= 0].tolist())
    inv = {i: name for name, i in tables.names.items()}
    return {inv[t]: n for t, n in c.most_common()}


def encode_score(score: symusic.Score, tokenizer: REMI, tables: Vocab) -> EncodedSong:
    """Encode a score and compute its bar data."""
    seq = tokenizer.encode(score)
    if isinstance(seq, list):  # never with one_token_stream, but be explicit
        raise TypeError("tokenizer must use one token stream for all programs")
    ids = np.asarray(seq.ids, dtype=np.int16)
    starts, rhythm, poly = bar_attributes(seq.ids, tables)
    return EncodedSong(ids, starts, rhythm, poly)


def attribute_edges(values: np.ndarray) -> list[float]:
    """Seven edges that cut ``values`` into 8 classes of about equal size, each edge a value
    that occurs, strictly rising, so that no class is empty where one value is frequent (a
    rhythm of exactly half the sub-beats is a quarter of all bars: plain quantiles put two
    edges on it and left a class that no bar had). Each edge in turn splits what is left
    evenly among the classes still to come."""
    if len(values) == 0:
        return [0.0] * (NUM_CLASSES - 1)
    v = np.asarray(values, dtype=np.float64)
    u, counts = np.unique(v, return_counts=True)
    if len(u) < NUM_CLASSES:  # too few distinct values for 8 classes
        return [float(x) for x in np.quantile(v, np.linspace(0, 1, NUM_CLASSES + 1)[1:-1])]
    below = np.r_[0, np.cumsum(counts)[:-1]]  # values under u[i]: class k holds [edge k-1, edge k)
    idx, prev = [], 0
    for k in range(NUM_CLASSES - 1):
        target = below[prev] + (len(v) - below[prev]) / (NUM_CLASSES - k)
        cands = np.arange(prev + 1, len(u) - (NUM_CLASSES - 2 - k))  # room for the edges above
        prev = int(cands[np.argmin(np.abs(below[cands] - target))])
        idx.append(prev)
    return [float(u[i]) for i in idx]


def attribute_classes(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Class 0..7 of each value given the saved quantile edges."""
    return np.searchsorted(np.asarray(edges), values, side="right").astype(np.uint8)
