"""The MIDI reader: the one way mtvae turns a MIDI file into a ``symusic.Score``.

``prepare`` and every command that takes a MIDI file (continue, interpolate, reconstruct,
transfer, render, evaluate) read through ``read_midi``, so a file that ``prepare`` skips is
refused by every command, with the same reason text. The guards, in order:

* the path is a regular file, not empty, at most ``Limits.max_bytes``;
* symusic can parse it; the division is ticks per quarter and at least 1 (SMPTE and 0 are refused);
* at most ``max_tracks`` tracks and ``max_notes`` notes, and at least one note;
* every event time (note ends included) fits comfortably in 32 bits;
* bars are musical bars (``Limits.meter``): a song that declares a meter of one beat or less
  (1/4, 2/8, ...), or switches to one, is re-barred on the meter its notes imply (3 or 4
  quarter-note beats, chosen by the periodicity of its onsets) with the downbeat inferred from
  where long notes, bass notes and harmonic changes fall; ``meter="4/4"`` re-bars every song
  in 4/4 that way, ``meter="keep"`` keeps the declared meters;
* runs of empty bars are trimmed: silence before the first note is removed and a run of more
  than ``max_empty_bars`` silent bars inside the song is cut to that many (whole bars of the
  meter in effect, so the bar grid after the cut is kept; tempo and meter changes inside a
  cut move to its start); silence and events after the last note are dropped;
* after trimming the song is at most ``max_bars`` bars long.

A refused file raises ``MidiRejected`` (a ``UserError``) whose ``reason`` is the text ``prepare``
writes in ``report.json``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic

from ..errors import UserError

MAX_TICK = 2**30  # symusic stores times in int32; sums of two times must not overflow


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 16 * 2**20
    max_tracks: int = 256
    max_notes: int = 200_000
    max_bars: int = 2048
    max_empty_bars: int = 4
    meter: str = "auto"  # "auto": re-bar one-beat meters; "4/4": re-bar all; "keep"

    def __post_init__(self):
        if self.meter not in METER_MODES:
            raise UserError(f"--meter {self.meter!r}: choose {', '.join(METER_MODES)}")

    def key(self) -> tuple:
        """What a cached tokenization depends on (``max_bars`` only filters, it never edits)."""
        return ("midi-reader", 2, self.max_empty_bars, self.meter)


METER_MODES = ("auto", "4/4", "keep")


DEFAULT_LIMITS = Limits()


class MidiRejected(UserError):
    """A MIDI file the reader refuses; ``reason`` is one line without the file name."""

    def __init__(self, name: str, reason: str, kind: str = "invalid"):
        super().__init__(f"{name}: {reason}")
        self.reason, self.kind = reason, kind  # kind: "invalid" or "length"


@dataclass
class ReadResult:
    score: symusic.Score
    bars: int  # length in bars after trimming
    trimmed_bars: int  # empty bars removed
    rebarred: str = ""  # why the bars were redrawn ("" when the declared meter was kept)
    meter: tuple[int, int] | None = None  # the single meter after re-barring


def read_midi(source, limits: Limits = DEFAULT_LIMITS, name: str | None = None) -> ReadResult:
    """Read and check a MIDI path, bytes or ``symusic.Score``; raise ``MidiRejected``."""
    if isinstance(source, symusic.Score):
        return check_score(source, limits, name or "score")
    if isinstance(source, (bytes, bytearray)):
        name = name or "MIDI data"
        data = bytes(source)
    else:
        path = Path(source)
        name = name or str(path)
        data = read_bytes(path, limits, name)
    if not data:
        raise MidiRejected(name, "empty file")
    if len(data) > limits.max_bytes:
        raise MidiRejected(name, f"larger than {limits.max_bytes // 2**20} MB")
    try:
        score = symusic.Score.from_midi(data)
    except Exception as e:  # noqa: BLE001 - symusic raises plain RuntimeError/ValueError
        raise MidiRejected(name, f"not valid MIDI: {_one_line(e)}") from None
    return check_score(score, limits, name)


def read_bytes(path: Path, limits: Limits, name: str) -> bytes:
    try:
        if not path.exists():
            raise MidiRejected(name, "file not found")
        if not path.is_file():  # a folder, a FIFO (reading it would block), a device ...
            raise MidiRejected(name, "not a regular file")
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise MidiRejected(name, f"larger than {limits.max_bytes // 2**20} MB")
        return path.read_bytes()
    except OSError as e:
        raise MidiRejected(name, f"cannot read: {e.strerror or e}") from None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:200] or type(e).__name__


def check_score(score: symusic.Score, limits: Limits = DEFAULT_LIMITS,
                name: str = "score") -> ReadResult:
    """The reader's guards and trimming on an already parsed score."""
    tpq = int(score.ticks_per_quarter)
    if tpq < 1:
        raise MidiRejected(name, f"division of {tpq} ticks per quarter note")
    if len(score.tracks) > limits.max_tracks:
        raise MidiRejected(name, f"{len(score.tracks)} tracks (at most {limits.max_tracks})")
    n_notes = int(score.note_num())
    if n_notes == 0:
        raise MidiRejected(name, "no notes")
    if n_notes > limits.max_notes:
        raise MidiRejected(name, f"{n_notes} notes (at most {limits.max_notes})")
    starts, ends = _note_spans(score)
    if starts.min() < 0 or ends.max() >= MAX_TICK or _meta_max(score) >= MAX_TICK:
        raise MidiRejected(name, f"event times beyond tick {MAX_TICK}")

    score, rebarred, meter = rebar(score, limits.meter)
    if rebarred:
        starts, ends = _note_spans(score)
        if ends.max() >= MAX_TICK or _meta_max(score) >= MAX_TICK:
            raise MidiRejected(name, f"event times beyond tick {MAX_TICK}")
    meters = _meters(score, tpq)
    cuts = _cuts(starts, ends, meters, limits.max_empty_bars)
    last = int(ends.max())
    # the song ends with the bar that holds the last sounding tick
    end = _bar_line_after(meters, max(last - 1, 0))
    removed = 0
    if cuts or end < _score_end(score):
        score = _apply_cuts(score, cuts, end)
        removed = sum(n for *_, n in cuts)
        meters = _meters(score, tpq)
        starts, ends = _note_spans(score)
        last = int(ends.max())
    bars = _count_bars(meters, max(last - 1, 0))
    if bars > limits.max_bars:
        raise MidiRejected(name, f"{bars} bars long after trimming silence "
                                 f"(at most {limits.max_bars}: see --max-bars)", "length")
    return ReadResult(score, bars, removed, rebarred, meter)


# ----------------------------------------------------------------------------- re-barring


def _beat_strength(score: symusic.Score, tpq: int):
    """Onset strength of each occupied quarter-note beat: (beats, strength, number of beats).

    Three cues of a downbeat, each normalised to mean 1 over the occupied beats and summed:
    the length of the notes starting on the beat (capped at 4 beats), the same for the low
    notes (the lowest quarter of the song's pitches), and the harmonic change (1 - cosine
    between the pitch classes starting on this beat and on the previous occupied one).
    Sparse over the beats that hold an onset, so a song's length costs nothing.
    """
    arrs = [t.notes.numpy() for t in score.tracks if not t.is_drum and t.note_num()] or \
        [t.notes.numpy() for t in score.tracks if t.note_num()]
    time = np.concatenate([a["time"] for a in arrs]).astype(np.int64)
    dur = np.concatenate([a["duration"] for a in arrs]).astype(np.int64)
    pitch = np.concatenate([a["pitch"] for a in arrs]).astype(np.int64)
    x = time / tpq
    beat = np.rint(x).astype(np.int64)
    near = np.abs(x - beat) < 0.13
    beat, w, pitch = beat[near], np.minimum(dur[near] / tpq, 4.0), pitch[near]
    n_beats = int(beat.max()) + 1 if len(beat) else 1
    beats, inv = np.unique(beat, return_inverse=True)
    if len(beats) < 2:
        return beats, np.ones(len(beats)), n_beats
    on = np.bincount(inv, weights=w, minlength=len(beats))
    low = pitch <= np.quantile(pitch, 0.25)
    bass = np.bincount(inv[low], weights=w[low], minlength=len(beats))
    chroma = np.zeros((len(beats), 12))
    np.add.at(chroma, (inv, pitch % 12), w)
    chroma /= np.linalg.norm(chroma, axis=1, keepdims=True) + 1e-9
    nov = np.concatenate([[1.0], 1.0 - (chroma[1:] * chroma[:-1]).sum(1)])
    f = sum(v / v.mean() for v in (on, bass, nov) if v.mean() > 0)
    return beats, np.asarray(f, dtype=float), n_beats


def infer_meter(score: symusic.Score, period: int | None = None) -> tuple[int, int, float]:
    """(beats per bar, downbeat phase in beats, salience) the notes imply.

    ``period`` fixes the beats per bar (4 for ``--meter 4/4``); otherwise 3 or 4, whichever
    puts more strength on one phase (4 unless 3 is clearly stronger). The salience is the
    mean strength on the chosen downbeats over the mean strength of all beats.
    """
    beats, f, n_beats = _beat_strength(score, int(score.ticks_per_quarter))
    mean = f.sum() / n_beats
    best = None
    for m in ((period,) if period else (4, 3)):
        per_phase = np.bincount(beats % m, weights=f, minlength=m) / (n_beats / m)
        p = int(np.argmax(per_phase))
        sal = float(per_phase[p] / mean) if mean > 0 else 1.0
        if best is None or sal > best[2] * 1.1:  # 3 must beat 4 by 10%
            best = (m, p, sal)
    return best


def rebar(score: symusic.Score, mode: str = "auto"):
    """(score, reason, meter): the score re-barred as ``mode`` asks, or unchanged (reason "").

    Re-barring shifts every event so that the inferred downbeat lands on a bar line (the
    first bar starts with up to ``beats - 1`` beats of rest: the anacrusis) and replaces all
    time signatures by one, ``beats``/4, at tick 0. Tempo and key at tick 0 stay at tick 0.
    """
    if mode == "keep":
        return score, "", None
    tpq = int(score.ticks_per_quarter)
    lengths = [bl for _, bl in _meters(score, tpq)]
    one_beat = [bl <= tpq for bl in lengths]
    if mode == "auto":
        if not any(one_beat):
            return score, "", None
        reason = "one-beat meter" if all(one_beat) else "switch to a one-beat meter"
    else:
        reason = "forced 4/4"
    m, phase, _ = infer_meter(score, 4 if mode == "4/4" else None)
    shift = ((m - phase) % m) * tpq
    out = score.shift_time(shift) if shift else score.copy()
    if shift:
        for lst in (out.tempos, out.key_signatures):
            if len(lst) and lst[0].time == shift:
                lst[0].time = 0
    out.time_signatures.clear()
    out.time_signatures.append(symusic.TimeSignature(0, m, 4))
    return out, reason, (m, 4)


# ----------------------------------------------------------------------------- bar arithmetic


def _note_spans(score: symusic.Score) -> tuple[np.ndarray, np.ndarray]:
    starts, ends = [], []
    for t in score.tracks:
        if t.note_num():
            a = t.notes.numpy()
            s = a["time"].astype(np.int64)
            starts.append(s)
            ends.append(s + np.maximum(a["duration"].astype(np.int64), 1))
    return np.concatenate(starts), np.concatenate(ends)


def _meta_max(score: symusic.Score) -> int:
    m = 0
    for lst in (score.tempos, score.time_signatures, score.key_signatures):
        if len(lst):
            m = max(m, int(lst.numpy()["time"].astype(np.int64).max()))
    return m


def _score_end(score: symusic.Score) -> int:
    ends = [int(score.end())]
    return max(ends)


def _meters(score: symusic.Score, tpq: int) -> list[tuple[int, int]]:
    """(start tick, bar length in ticks) of each meter, valid time signatures only; 4/4 first."""
    out = [(0, 4 * tpq)]
    for ts in score.time_signatures:
        num, den = int(ts.numerator), int(ts.denominator)
        if num < 1 or den < 1 or den & (den - 1) or den > 64:
            continue  # not a meter miditok can write; it drops it too
        bar = num * 4 * tpq // den
        if bar < 1:
            continue
        t = int(ts.time)
        # a meter starts at the bar line of the previous one at or after its tick
        prev_t, prev_bar = out[-1]
        if t < prev_t:
            continue
        if out and t == prev_t:
            out[-1] = (t, bar)
        else:
            out.append((t, bar))
    return out


def _meter_at(meters, tick: int) -> tuple[int, int, int | None]:
    """(meter start, bar length, next meter start or None) in effect at ``tick``."""
    i = max(bisect.bisect_right(meters, (tick, float("inf"))) - 1, 0)
    nxt = meters[i + 1][0] if i + 1 < len(meters) else None
    return meters[i][0], meters[i][1], nxt


def _bar_line_after(meters, tick: int) -> int:
    """The first bar line strictly after ``tick``."""
    t0, bl, _ = _meter_at(meters, tick)
    return t0 + ((tick - t0) // bl + 1) * bl


def _count_bars(meters, tick: int) -> int:
    """Bars from 0 up to and including the bar that holds ``tick``."""
    bars = 0
    for k, (t0, bl) in enumerate(meters):
        t1 = meters[k + 1][0] if k + 1 < len(meters) else None
        if t1 is not None and t1 <= tick:
            bars += -(-(t1 - t0) // bl)
        else:
            bars += (tick - t0) // bl + 1
            break
    return int(bars)


def _cuts(starts: np.ndarray, ends: np.ndarray, meters, keep: int) -> list[tuple[int, int, int]]:
    """Silent spans to remove: (from, to, bars), whole bars of one meter each."""
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], np.maximum.accumulate(ends[order])
    # silent gaps: before the first note, and wherever a note starts after all earlier ended
    gap_from = np.concatenate([[0], e[:-1]])
    gap_to = s
    shortest = min(bl for _, bl in meters)
    idx = np.nonzero(gap_to - gap_from > keep * shortest)[0]  # others cannot hold keep + 1 bars
    if len(s) and s[0] > 0 and (not len(idx) or idx[0] != 0):
        idx = np.concatenate([[0], idx])
    cuts = []
    for i in idx:
        g0, g1 = int(gap_from[i]), int(gap_to[i])
        k = 0 if i == 0 else keep  # silence before the first note goes entirely
        while True:
            t0, bl, nxt = _meter_at(meters, g0)
            a = t0 + -(-(g0 - t0) // bl) * bl  # first bar line at or after g0
            limit = g1 if nxt is None else min(g1, nxt)
            whole = (limit - a) // bl if limit > a else 0
            if whole > k:
                cuts.append((a + k * bl, a + whole * bl, int(whole - k)))
            if nxt is None or nxt >= g1:
                break
            g0, k = nxt, 0 if i == 0 else keep
    return cuts


def _apply_cuts(score: symusic.Score, cuts, end: int) -> symusic.Score:
    """Remove the spans (events inside one move to its start) and drop everything after ``end``."""
    old, new = [0], [0]
    shift = 0
    for a, b, _ in sorted(cuts):
        if a < old[-1]:
            continue
        if a > old[-1]:
            old.append(a)
            new.append(a - shift)
        old.append(b)  # everything in [a, b) lands on a
        new.append(a - shift)
        shift += b - a
    if end > old[-1]:
        old.append(end)
        new.append(end - shift)
    out = score.clip(0, end, clip_end=True) if end < _score_end(score) else score.copy()
    if len(old) > 2 or new[-1] != old[-1]:
        out = out.adjust_time(old, new)
    return out
