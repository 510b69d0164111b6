"""Metrics on hand-made scores where the answer is known."""

import numpy as np
import pytest
import symusic

from mtvae import metrics as M


def score_of(notes, tpq=480, sig=(4, 4), drums=()):
    """notes: (beat, beats, pitch). One piano track (and optional drum hits)."""
    s = symusic.Score(tpq)
    s.time_signatures.append(symusic.TimeSignature(0, *sig))
    t = symusic.Track("piano", 0, False)
    for b, d, p in notes:
        t.notes.append(symusic.Note(int(b * tpq), int(d * tpq), p, 80))
    s.tracks.append(t)
    if drums:
        dr = symusic.Track("drums", 0, True)
        for b in drums:
            dr.notes.append(symusic.Note(int(b * tpq), tpq // 4, 36, 100))
        s.tracks.append(dr)
    return s


def test_one_note_per_bar_has_polyphony_one_and_known_statistics():
    # C major scale, one whole note per bar, bar 3 left empty
    notes = [(0, 4, 60), (4, 4, 62), (12, 4, 64), (16, 4, 65)]
    f = M.piece_features(score_of(notes))
    assert f["polyphony"] == 1
    assert f["pitch_range"] == 5 and f["pitches_used"] == 4
    assert f["note_length"] == 4 and f["ioi"] == pytest.approx(16 / 3)
    assert f["empty_bar_rate"] == pytest.approx(1 / 5)
    assert f["scale_consistency"] == 1.0
    assert f["pitch_class_entropy"] == pytest.approx(2.0)  # four equally frequent classes


def test_chords_groove_and_drums():
    # a three-note chord on every beat of two identical bars: polyphony 3, groove 1
    notes = [(b, 1, p) for b in range(8) for p in (60, 64, 67)]
    f = M.piece_features(score_of(notes))
    assert f["polyphony"] == 3 and f["groove_consistency"] == 1.0
    # an off-beat drum hit in the second bar only breaks the groove by 1/16
    g = M.piece_features(score_of(notes, drums=[4.5]))
    assert g["groove_consistency"] == pytest.approx(1 - 1 / 16)
    assert g["pitch_range"] == 7  # drums never count as pitches


def test_identical_sets_overlap_fully_with_zero_kl():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    oa, kl = M.overlap_and_kl(x, x.copy())
    assert oa == pytest.approx(1.0) and kl == pytest.approx(0.0, abs=1e-9)
    oa2, kl2 = M.overlap_and_kl(x, x + 3)  # shifted by 3 standard deviations
    assert oa2 < 0.3 and kl2 > 1.0
    feats = M.set_features([score_of([(0, 1, 60), (1, 1, 64)]), score_of([(0, 2, 62)])])
    same = M.compare_sets(feats, feats)
    assert all(v["overlap"] == pytest.approx(1.0) for v in same.values())
    assert all(v["kl"] == pytest.approx(0.0, abs=1e-9) for v in same.values())


def test_note_f1():
    ref = score_of([(0, 1, 60), (1, 1, 62), (2, 1, 64), (3, 1, 65)])
    assert M.note_f1(ref, ref)["f1"] == 1.0
    half = score_of([(0, 1, 60), (1, 1, 62), (2.5, 1, 64), (3, 1, 66)])
    assert M.note_f1(ref, half) == {"precision": 0.5, "recall": 0.5, "f1": 0.5}


def test_spearman():
    assert M.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert M.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert M.spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(0.894427, abs=1e-5)


def test_longest_copied_run():
    rng = np.random.default_rng(1)
    train = [rng.integers(0, 500, size=n) for n in (300, 1000, 50)]
    index = M.CopyIndex(train)
    copied = train[1][100:400]
    assert index.longest(copied) == 300  # a copy of a training stretch: its full length
    mixed = np.concatenate([rng.integers(500, 600, 20), train[0][10:47], rng.integers(500, 600, 5)])
    assert index.longest(mixed) == 37
    assert index.longest(rng.integers(500, 600, 100)) == 0
    # a run across the border of two songs is not a copy of either
    across = np.concatenate([train[0][-5:], train[1][:5]])
    assert index.longest(across) == 5
