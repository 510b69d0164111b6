"""Metrics that need no model: music statistics of scores (Yang & Lerch, 2018), distribution
overlap and KL, note-level F1, Spearman's rho, and the longest run of tokens copied from a
corpus. ``evaluate.py`` applies them to a trained model.
"""

from __future__ import annotations

import math

import numpy as np
import symusic

SCALAR_FEATURES = ["pitch_range", "pitches_used", "polyphony", "ioi", "note_length",
                   "groove_consistency", "scale_consistency", "empty_bar_rate",
                   "pitch_class_entropy"]
MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])  # natural minor
GRID = 4  # onset grid for groove: 4 per beat (16th notes in 4/4)


# ----------------------------------------------------------------------------- per piece


def _notes(score: symusic.Score, drums: bool = False):
    """(onset, duration, pitch) in beats, sorted by onset; drums excluded unless asked."""
    tpq = score.ticks_per_quarter
    parts = [t.notes.numpy() for t in score.tracks if t.is_drum == drums and t.note_num()]
    if not parts:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=int)
    on = np.concatenate([p["time"] for p in parts]) / tpq
    du = np.concatenate([p["duration"] for p in parts]) / tpq
    pi = np.concatenate([p["pitch"] for p in parts]).astype(int)
    order = np.lexsort((pi, on))
    return on[order], du[order], pi[order]


def _bars(score: symusic.Score, end_beat: float) -> np.ndarray:
    """Bar start times in beats from the time signatures (4/4 if none), up to end_beat."""
    tpq = score.ticks_per_quarter
    sigs = sorted((ts.time / tpq, ts.numerator * 4 / ts.denominator) for ts in score.time_signatures)
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0.0, 4.0))
    starts, t, k = [], 0.0, 0
    while t < end_beat - 1e-9:
        while k + 1 < len(sigs) and sigs[k + 1][0] <= t + 1e-9:
            k += 1
        starts.append(t)
        t += sigs[k][1]
    return np.asarray(starts)


def piece_features(score: symusic.Score) -> dict:
    """Scalar features of one piece plus its pitch-class histogram (key 'pch')."""
    on, du, pi = _notes(score)
    all_on = np.concatenate([on, _notes(score, drums=True)[0]])
    f = {k: float("nan") for k in SCALAR_FEATURES}
    f["pch"] = np.zeros(12)
    if len(on) == 0:
        return f
    pch = np.bincount(pi % 12, minlength=12).astype(float)
    pch /= pch.sum()
    f["pch"] = pch
    f["pitch_range"] = float(pi.max() - pi.min())
    f["pitches_used"] = float(len(np.unique(pi)))
    onsets = np.unique(np.round(on, 6))
    ends = on + du
    f["polyphony"] = float(np.mean([np.sum((on <= t + 1e-9) & (ends > t + 1e-9)) for t in onsets]))
    f["ioi"] = float(np.mean(np.diff(onsets))) if len(onsets) > 1 else 0.0
    f["note_length"] = float(np.mean(du))
    nz = pch[pch > 0]
    f["pitch_class_entropy"] = float(-(nz * np.log2(nz)).sum())
    scales = [np.isin(np.arange(12), (base + r) % 12) for base in (MAJOR, MINOR) for r in range(12)]
    f["scale_consistency"] = float(max(pch[s].sum() for s in scales))
    bars = _bars(score, float(max(ends.max(), all_on.max() + 1e-6)))
    edges = np.append(bars, np.inf)
    which = np.searchsorted(edges, all_on, side="right") - 1
    f["empty_bar_rate"] = float(1 - len(np.unique(which)) / len(bars))
    # groove consistency: 1 - mean Hamming distance of adjacent bars' onset patterns
    patterns = []
    for b in range(len(bars)):
        length = (edges[b + 1] - bars[b]) if b + 1 < len(bars) else (bars[b] - bars[b - 1] if b else 4.0)
        vec = np.zeros(max(int(round(length * GRID)), 1), dtype=bool)
        idx = np.floor((all_on[which == b] - bars[b]) * GRID + 1e-6).astype(int)
        vec[np.clip(idx, 0, len(vec) - 1)] = True
        patterns.append(vec)
    dists = [np.mean(a != b) for a, b in zip(patterns, patterns[1:]) if len(a) == len(b)]
    f["groove_consistency"] = float(1 - np.mean(dists)) if dists else 1.0
    return f


def set_features(scores: list[symusic.Score]) -> dict[str, np.ndarray]:
    feats = [piece_features(s) for s in scores]
    out = {k: np.asarray([f[k] for f in feats], dtype=float) for k in SCALAR_FEATURES}
    out["pch"] = np.stack([f["pch"] for f in feats]) if feats else np.zeros((0, 12))
    return out


# ----------------------------------------------------------------------------- comparing sets


def _kde(values: np.ndarray, grid: np.ndarray, bw: float) -> np.ndarray:
    z = (grid[:, None] - values[None, :]) / bw
    p = np.exp(-0.5 * z * z).sum(1)
    p /= p.sum()
    return p


def overlap_and_kl(real: np.ndarray, generated: np.ndarray, points: int = 512) -> tuple[float, float]:
    """Overlap area and KL(real || generated) of two samples' Gaussian-KDE densities.

    Identical samples give (1, 0). Both densities share one grid and one bandwidth (Scott's
    rule on the pooled values), so the numbers compare like with like.
    """
    real, generated = real[np.isfinite(real)], generated[np.isfinite(generated)]
    if len(real) == 0 or len(generated) == 0:
        return float("nan"), float("nan")
    pooled = np.concatenate([real, generated])
    spread = pooled.std()
    bw = max(spread * len(pooled) ** (-1 / 5), 1e-3 * max(abs(pooled).max(), 1.0), 1e-6)
    lo, hi = pooled.min() - 4 * bw, pooled.max() + 4 * bw
    grid = np.linspace(lo, hi, points)
    p, q = _kde(real, grid, bw), _kde(generated, grid, bw)
    oa = float(np.minimum(p, q).sum())
    kl = float(np.sum(p * np.log((p + 1e-12) / (q + 1e-12))))
    return oa, max(kl, 0.0)


def histogram_overlap_and_kl(real: np.ndarray, generated: np.ndarray) -> tuple[float, float]:
    """For the pitch-class histogram: the sets' mean histograms, overlap and KL."""
    p = real.mean(0) if len(real) else np.zeros(12)
    q = generated.mean(0) if len(generated) else np.zeros(12)
    if p.sum() == 0 or q.sum() == 0:
        return float("nan"), float("nan")
    p, q = p / p.sum(), q / q.sum()
    return float(np.minimum(p, q).sum()), float(np.sum(p * np.log((p + 1e-12) / (q + 1e-12))))


def compare_sets(real: dict, generated: dict) -> dict[str, dict]:
    """Per feature: overlap area, KL, and both means."""
    out = {}
    for k in SCALAR_FEATURES:
        oa, kl = overlap_and_kl(real[k], generated[k])
        out[k] = {"overlap": oa, "kl": kl, "real_mean": float(np.nanmean(real[k])),
                  "generated_mean": float(np.nanmean(generated[k]))}
    oa, kl = histogram_overlap_and_kl(real["pch"], generated["pch"])
    out["pitch_class_histogram"] = {"overlap": oa, "kl": kl}
    return out


# ----------------------------------------------------------------------------- other metrics


def note_f1(reference: symusic.Score, predicted: symusic.Score, grid: int = 4,
            programs: bool = False) -> dict:
    """Note-level precision/recall/F1: a note matches on onset (1/grid beat: 16th notes by
    default), pitch, and the program too when ``programs``."""
    def keys(s: symusic.Score):
        tpq = s.ticks_per_quarter
        out: dict = {}
        for t in s.tracks:
            prog = (-1 if t.is_drum else t.program) if programs else 0
            for n in t.notes:
                k = (int(round(n.time / tpq * grid)), n.pitch, prog)
                out[k] = out.get(k, 0) + 1
        return out

    r, p = keys(reference), keys(predicted)
    match = sum(min(c, p.get(k, 0)) for k, c in r.items())
    nr, np_ = sum(r.values()), sum(p.values())
    prec = match / np_ if np_ else 0.0
    rec = match / nr if nr else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": prec, "recall": rec, "f1": f1}


# ----------------------------------------------------------------------------- per bar


def bar_profiles(score: symusic.Score, n_bars: int, steps: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Per bar (the score's own bar lines, first ``n_bars``): a chroma vector [n_bars, 12]
    (pitched notes, each weighted by how long it sounds inside the bar) and an onset vector
    [n_bars, steps] (every onset, drums included, on ``steps`` equal steps of the bar)."""
    chroma = np.zeros((n_bars, 12))
    groove = np.zeros((n_bars, steps))
    on, du, pi = _notes(score)
    d_on = _notes(score, drums=True)[0]
    end = float(max((on + du).max() if len(on) else 0.0, d_on.max() if len(d_on) else 0.0))
    bars = _bars(score, max(end, 1e-6) + 1e-6)
    bars = np.append(bars, bars[-1] + (bars[-1] - bars[-2] if len(bars) > 1 else 4.0))
    ons = np.concatenate([on, d_on])
    for b in range(min(n_bars, len(bars) - 1)):
        a, z = bars[b], bars[b + 1]
        over = np.clip(np.minimum(on + du, z) - np.maximum(on, a), 0, None)
        np.add.at(chroma[b], pi % 12, over)
        inside = ons[(ons >= a - 1e-6) & (ons < z - 1e-6)]
        idx = np.clip(np.floor((inside - a) / (z - a) * steps + 1e-6).astype(int), 0, steps - 1)
        groove[b, idx] = 1.0
    return chroma, groove


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows; 1 where both rows are empty, 0 where one is."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    out = (a * b).sum(1) / np.maximum(na * nb, 1e-12)
    out[(na == 0) & (nb == 0)] = 1.0
    out[(na == 0) ^ (nb == 0)] = 0.0
    return out


def bar_similarity(reference: symusic.Score, other: symusic.Score, n_bars: int) -> dict:
    """Mean per-bar chroma and groove cosine over the first ``n_bars`` bars, and note F1."""
    ca, ga = bar_profiles(reference, n_bars)
    cb, gb = bar_profiles(other, n_bars)
    return {"chroma": float(row_cosine(ca, cb).mean()), "groove": float(row_cosine(ga, gb).mean()),
            "note_f1": note_f1(reference, other)["f1"]}


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sx = x[order]
    i = 0
    while i < len(x):  # average ranks over ties
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(x, y) -> float:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2:
        return float("nan")
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


class CopyIndex:
    """Longest run of tokens that a sequence shares with a corpus, by 64-bit rolling hashes.

    Hashes of every window of length L in the corpus are built on demand (one vectorised
    pass per L) and cached; an exponential then binary search over L finds each sequence's
    longest match.
    """

    B = np.uint64(0x9E3779B97F4A7C15)  # odd, so it has an inverse modulo 2**64

    def __init__(self, songs: list[np.ndarray]):
        sep = [np.asarray(s, dtype=np.uint64) for s in songs]
        marker = np.uint64(2**40)  # a value no token has: windows across songs never match
        parts = []
        for k, s in enumerate(sep):
            parts += [s, np.asarray([marker + np.uint64(k)], dtype=np.uint64)]
        self.tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
        self._cache: dict[int, np.ndarray] = {}
        self._prefix, self._pow = self._prepare(self.tokens)

    @classmethod
    def _prepare(cls, t: np.ndarray):
        n = len(t)
        inv = cls._inverse(cls.B)
        with np.errstate(over="ignore"):
            pw = np.cumprod(np.full(n + 1, cls.B, dtype=np.uint64))
            pw = np.concatenate([[np.uint64(1)], pw[:-1]])  # B**i
            ipw = np.cumprod(np.full(n + 1, inv, dtype=np.uint64))  # B**-(i+1)
            prefix = np.concatenate([[np.uint64(0)], np.cumsum((t + np.uint64(1)) * ipw[:n])])
        return prefix, pw

    @staticmethod
    def _inverse(b: np.uint64) -> np.uint64:
        x = np.uint64(1)
        with np.errstate(over="ignore"):
            for _ in range(7):  # Newton's iteration doubles the correct bits: 2**64 after 6
                x = x * (np.uint64(2) - b * x)
        return x

    @classmethod
    def _windows(cls, prefix: np.ndarray, pw: np.ndarray, L: int) -> np.ndarray:
        n = len(prefix) - 1
        if L > n:
            return np.zeros(0, dtype=np.uint64)
        i = np.arange(n - L + 1)
        with np.errstate(over="ignore"):
            return (prefix[i + L] - prefix[i]) * pw[i + L]

    def _corpus(self, L: int) -> np.ndarray:
        if L not in self._cache:
            if len(self._cache) >= 16:  # each entry is 8 bytes per corpus token: keep recent ones
                self._cache.pop(next(iter(self._cache)))
            self._cache[L] = np.unique(self._windows(self._prefix, self._pow, L))
        return self._cache[L]

    def longest(self, seq) -> int:
        seq = np.asarray(seq, dtype=np.uint64)
        prefix, pw = self._prepare(seq)

        def found(L: int) -> bool:
            corpus = self._corpus(L)
            w = self._windows(prefix, pw, L)
            pos = np.searchsorted(corpus, w)
            pos = np.clip(pos, 0, max(len(corpus) - 1, 0))
            return bool(len(corpus) and np.any(corpus[pos] == w))

        n = len(seq)
        if n == 0 or not found(1):
            return 0
        # exponential then binary search: probes are short lengths shared by every sequence,
        # so the corpus is hashed for few distinct L (each costs a pass over the corpus)
        lo, hi = 1, 2
        while hi <= n and found(hi):
            lo, hi = hi, hi * 2
        hi = min(hi - 1, n)
        while lo < hi:  # largest L with a match; found(lo) holds
            mid = (lo + hi + 1) // 2
            if found(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo


def summary(values) -> dict:
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return {"median": math.nan, "max": math.nan, "mean": math.nan}
    return {"median": float(np.median(v)), "max": float(v.max()), "mean": float(v.mean())}
