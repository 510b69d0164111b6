"""Infilling (issue #11): the fill-in-the-middle arrangement of training windows, `infill`
keeping every bar outside its ranges note for note (gap at the start, middle and end, several
ranges, --like, --keep-latents), bar edits by `transfer --bars A-B`, and bad ranges."""

import json

import numpy as np
import pytest
from miditok.utils import get_bars_ticks

from mtvae import MusicVAE
from mtvae.cli import main
from mtvae.data import DataDir
from mtvae.data import tokens as T
from mtvae.data.windows import TrainWindows, make_example
from mtvae.errors import UserError


@pytest.fixture(scope="module")
def vae(tiny_run):
    return MusicVAE.load(tiny_run)


@pytest.fixture(scope="module")
def song(vae, nottingham):
    """A tune of at least 12 bars."""
    for p in nottingham:
        if len(vae.read(p).bar_starts) >= 12:
            return p
    raise AssertionError("no Nottingham tune of 12 bars")


def test_infilling_windows_are_the_bars_around_a_gap_then_the_gap(tiny_data, vae):
    store = DataDir(tiny_data).split("train")
    fill = vae.tokenizer.vocab[T.FILL]
    bar_id = vae.grammar.bar_id
    seen_gaps, seen_before, seen_after = set(), 0, 0
    for s in range(len(store)):
        for start_bar in (0, 3):
            if start_bar >= len(store.bars(s)):
                continue
            plain = make_example(store, s, start_bar, 256, 96)
            ex = make_example(store, s, start_bar, 256, 96, rng=np.random.default_rng(s),
                              infill=1.0, fill_id=fill)
            w, arranged = plain["window"], ex["window"]
            assert len(arranged) <= len(w)  # FILL never makes a window longer
            assert list(arranged).count(fill) == 1
            cut = list(arranged).index(fill)
            around, gap = arranged[:cut], arranged[cut + 1:]
            # the gap is whole bars taken from the window at a bar line ...
            assert gap[0] == bar_id
            starts = [i for i in range(len(w)) if w[i] == bar_id]
            at = [i for i in starts if np.array_equal(w[i:i + len(gap)], gap)]
            assert at, "the gap is not a run of the window's bars"

            # a window whose bars are all whole loses the gap's last token (FILL takes its place)
            shorts = (0, 1) if len(arranged) == len(w) else (0,)

            def fits(i, short):  # the tokens before FILL: the window without the gap, cut at a bar
                end = i + len(gap) + short
                if end > len(w) or (end < len(w) and w[end] != bar_id):
                    return False
                rest = np.r_[w[:i], w[end:]]
                return np.array_equal(around, rest[:len(around)]) and (
                    len(around) == len(rest) or rest[len(around)] == bar_id)

            # (a tune may repeat the gap's bars)
            i = next((i for i in at for short in shorts if fits(i, short)), None)
            assert i is not None, "the tokens before FILL are not the window without the gap"
            seen_gaps.add(int(np.sum(gap == bar_id)))
            seen_before += i > 0
            seen_after += i + len(gap) < len(around) + len(gap)
            # every token keeps its bar's conditioning; FILL is never a target
            assert len(ex["bar_idx"]) == len(arranged) - 1
    assert len(seen_gaps) >= 4 and max(seen_gaps) <= 8
    assert seen_before and seen_after
    batch = TrainWindows(store, 256, 8, 96, 0, infill=1.0, fill_id=fill).batch(0)
    assert (batch.inputs == fill).sum() == 8 and not (batch.targets == fill).any()
    # infill 0: exactly the windows of before
    a = TrainWindows(store, 256, 8, 96, 0, infill=0.0, fill_id=fill).batch(3)
    b = TrainWindows(store, 256, 8, 96, 0).batch(3)
    assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("inputs", "bar_idx"))


def test_a_window_of_whole_bars_keeps_its_length():
    from mtvae.data.windows import arrange_infill

    w = np.arange(100, 130)
    starts = np.array([0, 5, 12, 20])
    ends = np.r_[starts[1:], 30]  # the last bar ends exactly at the window's end
    for seed in range(20):
        tokens, bars = arrange_infill(w, starts, ends, 4, np.random.default_rng(seed))
        assert len(tokens) == len(bars) == 30 and list(tokens).count(4) == 1
        assert sorted(tokens[tokens != 4]) == sorted(w)[:29] or len(set(w) - set(tokens)) == 1


def notes_by_bar(score, n_bars: int) -> dict[int, set]:
    """bar -> {(program, drum, onset, duration, pitch, velocity)} of the notes starting in it."""
    ticks = list(get_bars_ticks(score))
    out = {b: set() for b in range(n_bars)}
    for tr in score.tracks:
        for n in tr.notes:
            b = int(np.searchsorted(ticks, n.time, side="right")) - 1
            out.setdefault(b, set()).add((tr.program, tr.is_drum, n.time, n.duration, n.pitch,
                                          n.velocity))
    return out


def check_kept(vae, song, out, ranges) -> None:
    enc = vae.read(song)
    n = len(enc.bar_starts)
    ref = notes_by_bar(vae.tokenizer.decode(enc.ids.tolist()), n)
    new = notes_by_bar(out, n)
    assert len(T.encode_score(out, vae.tokenizer, vae.tables).bar_starts) == n
    gap = {b for a, z in ranges for b in range(a - 1, z)}
    for b in range(n):
        if b not in gap:
            assert new[b] == ref[b], f"bar {b + 1} changed"
    assert any(new[b] for b in gap), "no notes in the new bars"
    assert any(new[b] != ref[b] for b in gap), "the new bars are the old ones"


@pytest.mark.parametrize("where", ["start", "middle", "end", "several"])
def test_infill_keeps_every_other_bar_note_for_note(vae, song, where):
    n = len(vae.read(song).bar_starts)
    ranges = {"start": [(1, 2)], "middle": [(5, 8)], "end": [(n - 1, n)],
              "several": [(2, 3), (7, 7), (n, n)]}[where]
    spec = ",".join(f"{a}-{b}" for a, b in ranges)
    out = vae.infill(song, spec, seed=1)
    check_kept(vae, song, out, ranges)


def test_like_keep_latents_and_bar_edits_keep_the_other_bars(vae, song, nottingham):
    other = next(p for p in nottingham if p != song)
    check_kept(vae, song, vae.infill(song, [(4, 6)], like=other, seed=2), [(4, 6)])
    check_kept(vae, song, vae.infill(song, "4-6", keep_latents=True, rhythm=[7, 7, 7],
                                     temperature=0.5, seed=2), [(4, 6)])
    check_kept(vae, song, vae.transfer(song, bars="3-5", rhythm_shift=2, seed=3), [(3, 5)])
    # the same seed gives the same new bars
    a, b = vae.infill(song, "4-6", seed=5), vae.infill(song, "4-6", seed=5)
    assert notes_by_bar(a, 12) == notes_by_bar(b, 12)
    with pytest.raises(UserError, match="exclude each other"):
        vae.infill(song, "4-6", like=other, keep_latents=True)


def test_infill_command_writes_shaded_roll_and_settings(tiny_run, song, tmp_path, capsys):
    out = tmp_path / "fill"
    rc = main(["infill", str(tiny_run), str(song), "--bars", "3-4,9-10", "--seed", "1",
               "--no-audio", "--quiet", "--out", str(out), "--rhythm", "2,3"])
    assert rc == 0, capsys.readouterr().err
    settings = json.loads((out / "settings.json").read_text())
    assert settings["new_bars"] == [[3, 4], [9, 10]]
    assert (out / "infill.mid").stat().st_size > 0 and (out / "infill.png").stat().st_size > 0
    rc = main(["transfer", str(tiny_run), str(song), "--bars", "2-3", "--rhythm-shift", "1",
               "--no-audio", "--quiet", "--out", str(tmp_path / "edit")])
    assert rc == 0


@pytest.mark.parametrize("bars, says", [
    ("3-6,5-8", "overlap"), ("9-999", "has"), ("5-3", "empty range"), ("0-2", "empty range"),
    ("x", "FIRST-LAST"), ("3-", "FIRST-LAST"), (",", "FIRST-LAST"),
])
def test_bad_ranges_exit_2_with_one_line(tiny_run, song, bars, says, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["infill", str(tiny_run), str(song), "--bars", bars, "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and says in err and "--bars" in err, err
    assert not (out / "infill.mid").exists()
    for opt in (["--rhythm", "3,x"], ["--rhythm", "9"]):
        rc = main(["infill", str(tiny_run), str(song), "--bars", "2-3", *opt, "--quiet",
                   "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and "--rhythm" in err, err


def test_a_model_trained_without_infilling_refuses_with_one_line(tiny_run, song, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    cfg = json.loads((old / "config.json").read_text())
    cfg["train"]["infill"] = 0.0
    (old / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="trained without infilling"):
        MusicVAE.load(old).infill(song, "2-3")


@pytest.mark.slow
def test_the_infilling_evaluation_measures_what_infill_writes(vae, song, nottingham):
    from mtvae import metrics as M
    from mtvae.evaluate import INFILL_BEFORE, format_table, infilling, join_nll

    songs = [song, next(p for p in nottingham[1:] if len(vae.read(p).bar_starts) >= 8)]
    r = infilling(vae, songs, 4, vae.sampling(seed=4), gaps=(2,))  # as evaluate
    row = r["2"]
    assert row["songs"] == 2
    a, b = INFILL_BEFORE + 1, INFILL_BEFORE + 2  # bars 5-6, numbered from 1
    sims = {"infill": [], "infill_own_latents": []}
    joins = {"infill": [], "original": []}
    for i, p in enumerate(songs):  # the same new bars through the public API
        enc = vae.read(p)
        ref = vae.tokenizer.decode(enc.ids[enc.bar_starts[a - 1]:enc.bar_starts[b]].tolist())
        for name, kw in (("infill", {}), ("infill_own_latents", {"keep_latents": True})):
            out = vae.infill(p, f"{a}-{b}", seed=4 + i, **kw)
            new = T.encode_score(out, vae.tokenizer, vae.tables)
            gap = vae.tokenizer.decode(new.ids[new.bar_starts[a - 1]:new.bar_starts[b]].tolist())
            sims[name].append(M.bar_similarity(ref, gap, 2))
            if name == "infill":  # how the new bars lead into the first kept bar after them
                bars = [new.ids[x:y].tolist() for x, y in
                        zip(new.bar_starts, list(new.bar_starts[1:]) + [len(new.ids)])]
                joins["infill"].append(join_nll(vae, bars, enc.rhythm, enc.polyphony,
                                                enc.timesigs, b))
        joins["original"].append(join_nll(vae, enc.bar_tokens(), enc.rhythm, enc.polyphony,
                                          enc.timesigs, b))
    for name, rows in sims.items():
        for k in ("chroma", "groove", "note_f1"):
            assert row[name][k] == pytest.approx(np.mean([s[k] for s in rows])), (name, k)
    # (the new bars' tokens as written, not as re-read from the MIDI: within 1%)
    for name, values in joins.items():
        assert row[name]["join_nll"] == pytest.approx(np.mean(values), rel=0.01), name
    assert row["infill"]["join_nll"] != row["original"]["join_nll"]
    for name in ("continuation", "continuation_own_latents"):
        assert 0 <= row[name]["statistics_overlap"] <= 1 and row[name]["join_nll"] > 0
    assert "2 bars: infill" in format_table({
        "likelihood": {"bits_per_token": 1, "bits_per_note": 1, "reconstruction_nats_per_token": 1,
                       "kl_nats_per_token": 1, "kl_nats_per_bar": 1,
                       "teacher_forced_token_accuracy": 1, "tokens": 1},
        "run_dir": "r", "split": "test", "parameters": 1, "infilling": r,
        "control": {"rhythm": {"spearman_rho": 0}, "polyphony": {"spearman_rho": 0}},
        "music_statistics": {"mtvae": {}},
        "memorisation": {"longest_copied_run": {"median": 0, "max": 0},
                         "sample_tokens": {"median": 0}}})


def test_the_demo_shows_original_gap_and_infilled_bars(vae, song):
    from mtvae.demo import _infill_example

    rows = _infill_example(vae, [str(song)], seed=0)
    assert [r[1] for r in rows] == ["infill_original", "infill_gap", "infill_new"]
    n = len(vae.read(song).bar_starts)
    orig, blank, new = (notes_by_bar(r[2], n) for r in rows)
    assert orig[2] and orig[3] and not blank[2] and not blank[3] and new[2] | new[3]
    assert all(orig[b] == blank[b] == new[b] for b in range(n) if b not in (2, 3))
    assert all(r[4] == [(2, 4)] for r in rows)
