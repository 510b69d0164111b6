"""Tokens: round-trip fidelity on real music, bar boundaries, bar attributes, BPE."""

import numpy as np
import pytest
import symusic
from miditok.utils import get_bars_ticks

from mtvae.data import tokens as T


@pytest.fixture(scope="module")
def tok():
    return T.make_tokenizer()


@pytest.fixture(scope="module")
def tables(tok):
    return T.TokenTables(tok)


def test_vocab_parses_every_token_once_for_every_user(tok):
    v = T.Vocab(tok.vocab)
    at = lambda token: (int(v.kind[tok.vocab[token]]), int(v.value[tok.vocab[token]]))  # noqa: E731
    assert at("Bar_None") == (T.BAR, 0) and at("PAD_None") == (T.OTHER, 0)
    assert at("TimeSig_6/8") == (T.TIMESIG, 6 * T.POS_PER_BEAT)  # positions per bar
    assert at("TimeSig_3/4") == (T.TIMESIG, 3 * T.POS_PER_BEAT)
    assert at("Position_12") == (T.POSITION, 12)
    assert at("Program_-1") == (T.PROGRAM, -1) and at("Program_41") == (T.PROGRAM, 41)
    assert at("Pitch_60") == (T.PITCH, 60) and at("PitchDrum_36") == (T.PITCHDRUM, 36)
    assert at("Velocity_103") == (T.VELOCITY, 103)
    assert at("Duration_1.2.8") == (T.DURATION, 10)  # 1 + 2/8 beats, 8 positions a beat
    assert at("Duration_4.3.4") == (T.DURATION, 38)
    assert at("Tempo_121.29")[0] == T.TEMPO and v.tempo[tok.vocab["Tempo_121.29"]] == 121.29
    assert len(v) == len(tok.vocab) and len(v.ids(T.PITCHDRUM)) == 62
    # a tokenizer gives the same table as its vocabulary, and the attribute pass uses it
    assert np.array_equal(T.TokenTables(tok).kind, v.kind)
    assert np.array_equal(T.TokenTables(tok).value, v.value)
    # the generation grammar and augmentation build on this table, not on strings of their own
    from mtvae.data.windows import Augmenter
    from mtvae.data.grammar import Grammar

    g = Grammar(v)
    assert g.vocab is v and g.kind is v.kind and g.bar_id == tok.vocab["Bar_None"]
    assert Grammar(tok.vocab).kind.tolist() == v.kind.tolist()
    aug = Augmenter(v, transpose=2, tempo_jitter=1.0)
    assert aug.shift_table[2][tok.vocab["Pitch_60"]] == tok.vocab["Pitch_62"]
    assert aug.shift_table[2][tok.vocab["PitchDrum_36"]] == tok.vocab["PitchDrum_36"]
    assert aug.tempo_step[1][tok.vocab["Tempo_114.52"]] == tok.vocab["Tempo_121.29"]


def real_files(pop909, nottingham):
    # a handful of real songs: piano arrangements (3 tracks) and folk tunes in 6/8, 4/4, 3/4
    return pop909[:3] + [nottingham[i] for i in (0, 200, 400, 600)]


def notes_in_beats(score: symusic.Score):
    """Every note as (program, is_drum, pitch, onset, duration) in beats, sorted."""
    tpq = score.ticks_per_quarter
    out = []
    for t in score.tracks:
        for n in t.notes:
            out.append((t.program, t.is_drum, n.pitch, n.time / tpq, n.duration / tpq))
    return sorted(out)


def test_round_trip_is_exact_after_quantisation(tok, pop909, nottingham):
    for path in real_files(pop909, nottingham):
        score = symusic.Score(path)
        ids = tok.encode(score).ids
        decoded = tok.decode(ids)
        # quantisation happens once: re-encoding the decoded score gives the same tokens
        assert tok.encode(decoded).ids == ids, path.name
        # and the decoded notes are the original notes moved at most to the nearest grid step
        orig, dec = notes_in_beats(score), notes_in_beats(decoded)
        assert len(orig) == len(dec), path.name
        onset_step = 1 / 8  # 8 positions per beat
        # tracks of one program merge into one on decoding: pair notes by grid onset and pitch
        key = lambda n: (n[0], n[1], int(n[3] / onset_step + 0.5), n[2], n[4])  # noqa: E731
        for o, d in zip(sorted(orig, key=key), sorted(dec, key=key)):
            assert (o[0], o[1], o[2]) == (d[0], d[1], d[2]), path.name
            assert abs(o[3] - d[3]) <= onset_step / 2 + 1e-9, path.name
            # durations: onset and offset snap to the 1/8-beat grid, then to the duration grid
            # (1/8 beat up to 4 beats, 1/4 beat up to 12, clipped beyond); minimum one step
            step = onset_step if o[4] <= 4 else 0.25
            tol = onset_step + step / 2 + 1e-9
            assert abs(min(o[4], 12) - d[4]) <= tol or (o[4] < onset_step and d[4] == onset_step)
        # tempos: every decoded change is a tempo class within one class step of an original
        # change at that grid time (miditok's rounding is not always to the nearest class)
        classes = np.asarray(tok.tempos)
        tempo_step = float(np.diff(classes).max())
        # a file with no tempo event plays at MIDI's default, 120 quarter notes per minute
        src = [(x.time / score.ticks_per_quarter, x.qpm) for x in score.tempos] or [(0.0, 120.0)]
        for x in decoded.tempos:
            b = x.time / decoded.ticks_per_quarter
            assert np.min(np.abs(classes - x.qpm)) < 0.01
            near = [q for t, q in src if abs(t - b) <= onset_step / 2 + 1e-9]
            assert any(abs(x.qpm - min(max(q, 40), 250)) <= tempo_step for q in near), (path.name, b)
        assert 1 <= len(decoded.tempos) <= max(len(score.tempos), 1)
        # time signatures: the same sequence of meters
        meters = lambda sc: [(x.numerator, x.denominator) for x in sc.time_signatures]  # noqa: E731
        dedup = lambda m: [a for i, a in enumerate(m) if i == 0 or a != m[i - 1]]  # noqa: E731
        assert dedup(meters(score)) == dedup(meters(decoded)), path.name


def test_bar_boundaries_match_the_score(tok, tables, pop909, nottingham):
    for path in real_files(pop909, nottingham):
        decoded = tok.decode(tok.encode(symusic.Score(path)).ids)
        ids = tok.encode(decoded).ids
        starts, _, _ = T.bar_attributes(ids, tables)
        assert all(tok[ids[i]] == "Bar_None" for i in starts)
        # bars of the score (by its time signatures) up to the last onset
        onsets = [n.time for t in decoded.tracks for n in t.notes]
        bar_ticks = [b for b in get_bars_ticks(decoded, only_notes_onsets=True) if b <= max(onsets)]
        assert len(starts) == len(bar_ticks), path.name
        # the notes that start in each bar are the notes tokenised in that bar
        per_bar = np.histogram(onsets, bins=list(bar_ticks) + [decoded.end() + 1])[0]
        is_pitch = np.isin(tables.kind[np.asarray(ids)], (T.PITCH, T.PITCHDRUM))
        token_bars = np.searchsorted(starts, np.nonzero(is_pitch)[0], side="right") - 1
        assert per_bar.tolist() == np.bincount(token_bars, minlength=len(starts)).tolist()


def hand_written_score() -> symusic.Score:
    """Four bars with known attributes (tpq 480; bars 0-2 in 4/4, bar 3 in 3/4)."""
    q = 480
    s = symusic.Score(q)
    s.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    s.time_signatures.append(symusic.TimeSignature(12 * q, 3, 4))
    s.tempos.append(symusic.Tempo(0, 120))
    t = symusic.Track("piano", 0, False)
    N = lambda beat, dur, pitch: t.notes.append(symusic.Note(int(beat * q), int(dur * q), pitch, 80))
    for b, p in enumerate((60, 62, 64, 65)):  # bar 0: four quarter notes
        N(b, 1, p)
    for p in (48, 52, 55):  # bar 1: a two-beat chord under four eighths, a 16th, a long G
        N(4, 2, p)
    for k, p in enumerate((72, 74, 76, 77)):
        N(4 + k / 2, 0.5, p)
    N(4 + 3.25, 0.25, 79)
    N(4 + 3.5, 2, 67)  # held into bar 2
    N(8, 1, 69)  # bar 2: one quarter while the G still sounds
    N(12, 1, 60)  # bar 3 (3/4): two notes
    N(14, 1, 62)
    s.tracks.append(t)
    return s


def test_attributes_on_a_hand_written_score(tok, tables):
    song = T.encode_score(hand_written_score(), tok, tables)
    assert len(song.bar_starts) == 4
    # rhythm: sub-beats with an onset / sub-beats in the bar (16 in 4/4, 12 in 3/4)
    np.testing.assert_allclose(song.rhythm, [4 / 16, 6 / 16, 1 / 16, 2 / 12])
    # polyphony: bar 1 onsets sound 4,4,4,4 (chord + melody), then 1, 1; bar 2: the held G + A
    np.testing.assert_allclose(song.polyphony, [1, 3.0, 2, 1])


def test_attribute_classes_use_quantile_edges():
    values = np.arange(80, dtype=np.float32)
    edges = T.attribute_edges(values)
    classes = T.attribute_classes(values, edges)
    assert classes.min() == 0 and classes.max() == 7
    assert np.bincount(classes).tolist() == [10] * 8


def test_no_attribute_class_is_empty_when_a_value_is_frequent(pop909):
    """Real bars hold exact values often (half of the sub-beats with an onset, four notes at
    every onset): the edges must still give every class some bars, or asking for that class
    conditions the decoder on an embedding it never trained."""
    tok = T.make_tokenizer()
    tables = T.TokenTables(tok)
    songs = [T.encode_score(symusic.Score(p), tok, tables) for p in pop909[:12]]
    for attr in ("rhythm", "polyphony"):
        values = np.concatenate([getattr(s, attr) for s in songs])
        counts = np.bincount(T.attribute_classes(values, T.attribute_edges(values)), minlength=8)
        assert (counts > 0).all(), (attr, counts.tolist())
        assert counts.max() < 0.5 * len(values), (attr, counts.tolist())
    # a value held by a third of the data is a class of its own, and the rest still split
    values = np.r_[np.full(300, 0.5), np.linspace(0, 1, 600)]
    counts = np.bincount(T.attribute_classes(values, T.attribute_edges(values)), minlength=8)
    assert (counts > 0).all() and counts.max() >= 300, counts.tolist()
