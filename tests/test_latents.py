"""Issue #10: bars that are bars, one meter per generated piece, per-bar similarity metrics,
and a decoder that reads its bar latents."""

import json

import numpy as np
import pytest
import symusic

from mtvae import MusicVAE
from mtvae import metrics as M
from mtvae.data import prepare
from mtvae.data import tokens as T
from mtvae.data.midi import Limits, infer_meter, read_midi
from mtvae.errors import UserError
from mtvae.generate import Sampling


def declared(score: symusic.Score, num: int, den: int, shift_beats: int = 0) -> symusic.Score:
    """The same notes, shifted by some beats, declaring one meter num/den."""
    tpq = score.ticks_per_quarter
    out = score.shift_time(shift_beats * tpq) if shift_beats else score.copy()
    out.time_signatures.clear()
    out.time_signatures.append(symusic.TimeSignature(0, num, den))
    return out


def onsets(score: symusic.Score) -> list[tuple[int, int]]:
    return sorted((n.time, n.pitch) for t in score.tracks for n in t.notes)


def meters_of(nottingham, num: int, den: int, k: int) -> list[symusic.Score]:
    out = []
    for p in nottingham:
        s = symusic.Score(p)
        if {(t.numerator, t.denominator) for t in s.time_signatures} == {(num, den)}:
            out.append(s)
        if len(out) == k:
            break
    return out


def test_a_one_beat_meter_is_rebarred_on_the_downbeat_the_notes_imply(nottingham):
    # folk tunes in 4/4 (their bar lines are right), moved by 1-3 beats and declared 1/4:
    # the reader must find 4 beats per bar and put the bar lines back where they were
    tunes = meters_of(nottingham, 4, 4, 12)
    exact = 0
    for k, s in enumerate(tunes):
        shift = 1 + k % 3
        bad = declared(s, 1, 4, shift)
        r = read_midi(bad)
        assert r.rebarred == "one-beat meter" and r.meter == (4, 4)
        bar = 4 * s.ticks_per_quarter
        ref = read_midi(s).score  # the original, trimmed the same way
        got, want = onsets(r.score), onsets(ref)
        offset = got[0][0] - want[0][0]
        exact += offset % bar == 0 and [(t - offset, p) for t, p in got] == want
        # kept as declared when asked: every bar is one beat long
        kept = read_midi(bad, Limits(meter="keep"))
        assert kept.rebarred == "" and kept.bars > 3 * r.bars
    assert exact >= 10, f"only {exact} of {len(tunes)} tunes got their bar lines back"


def test_three_beats_are_found_and_4_4_can_be_forced(nottingham):
    waltzes = meters_of(nottingham, 3, 4, 8)
    found = [infer_meter(declared(s, 1, 4, 1))[0] for s in waltzes]
    assert sum(m == 3 for m in found) >= 7, found
    forced = read_midi(waltzes[0], Limits(meter="4/4"))
    assert forced.rebarred == "forced 4/4" and forced.meter == (4, 4)
    assert {(t.numerator, t.denominator) for t in forced.score.time_signatures} == {(4, 4)}
    # a plausible declared meter is kept in auto mode
    assert read_midi(waltzes[0]).rebarred == ""
    with pytest.raises(UserError, match="--meter"):
        Limits(meter="5/4")


def test_prepare_rebars_pop909s_one_beat_songs_and_counts_them(pop909, tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    picked = []
    for p in pop909:  # two songs that declare 1/4 and one that declares 4/4
        ts = {(t.numerator, t.denominator) for t in symusic.Score(p).time_signatures}
        if (ts == {(1, 4)} and sum(x[1] == {(1, 4)} for x in picked) < 2) or \
                (ts == {(4, 4)} and not any(x[1] == {(4, 4)} for x in picked)):
            picked.append((p, ts))
        if len(picked) == 3:
            break
    for p, _ in picked:
        (songs / p.name).symlink_to(p)
    rep = prepare([str(songs)], tmp_path / "auto", workers=1, progress=False)
    assert rep["meter"]["rebarred"] == {"one-beat meter": 2}
    assert rep["meter"]["kept_as_declared"] == 1
    assert rep["bar_lengths"]["songs_with_one_beat_bars"] == 0
    meta = json.loads((tmp_path / "auto" / "meta.json").read_text())
    assert meta["meter"] == "auto" and next(iter(meta["meters"])).startswith("TimeSig_")
    keep = prepare([str(songs)], tmp_path / "keep", workers=1, progress=False, meter="keep")
    assert keep["bar_lengths"]["songs_with_one_beat_bars"] == 2
    assert keep["splits"]["train"]["bars"] + keep["splits"]["valid"]["bars"] + \
        keep["splits"]["test"]["bars"] > 3 * sum(rep["splits"][s]["bars"] for s in rep["splits"])


def bar_meters(m: MusicVAE, score: symusic.Score) -> list[str]:
    enc = T.encode_score(score, m.tokenizer, m.tables)
    vocab = {i: t for t, i in m.tokenizer.vocab.items()}
    return [vocab[int(enc.ids[b + 1])] for b in enc.bar_starts]


def test_generation_keeps_one_meter(tiny_run, nottingham):
    m = MusicVAE.load(tiny_run)
    default = m.default_meter()
    for piece in m.sample(bars=6, n=3, seed=2):
        assert bar_meters(m, piece) == [f"TimeSig_{default}"] * 6
    waltz = m.sample(bars=5, seed=4, meter="3/4")
    assert bar_meters(m, waltz) == ["TimeSig_3/4"] * 5
    # a reconstruction keeps the song's own bars
    song = next(p for p in nottingham if "TimeSig_6/8" in bar_meters(m, symusic.Score(p)))
    own = bar_meters(m, m.tokenizer.decode(m.read(song).first_bars(4).ids.tolist()))
    assert own == ["TimeSig_6/8"] * 4
    assert bar_meters(m, m.reconstruct(song, bars=4, seed=1)) == own
    with pytest.raises(UserError, match="--meter"):
        m.sample(bars=2, meter="7/3")


def test_bar_profiles_on_real_music(nottingham):
    s = read_midi(nottingham[3]).score
    same = M.bar_similarity(s, s, 8)
    assert same == pytest.approx({"chroma": 1.0, "groove": 1.0, "note_f1": 1.0})
    other = read_midi(nottingham[40]).score
    diff = M.bar_similarity(s, other, 8)
    assert diff["chroma"] < 0.95 and diff["note_f1"] < 0.5
    chroma, groove = M.bar_profiles(s, 8)
    assert chroma.shape == (8, 12) and groove.shape == (8, 16)
    assert (groove.sum(1) > 0).all() and (chroma.sum(1) > 0).all()


@pytest.fixture(scope="module")
def latent_run(tiny_data, tmp_path_factory):
    """A tiny model trained briefly with the latent levers (bag-of-notes loss, low β, bar bias)."""
    from mtvae.train import train

    run = tmp_path_factory.mktemp("runs") / "latent"
    train(tiny_data, run, preset="tiny", max_steps=100, val_every=50, batch_size=4, segments=2,
          quiet=True, device="cpu", aux_weight=1.0, beta_max=0.2, free_bits=1.0, word_dropout=0.3,
          lr=2e-3, prior_steps=0, model_overrides={"bar_bias": True})
    return run


def test_the_decoder_reads_its_latents(latent_run, tiny_data):
    """Greedy decoding from a song's latents, from zeros and from another song's latents must
    differ; with the latent's path into the decoder cut, all three must be the same (the
    check that this test can fail)."""
    import csv

    import torch

    m = MusicVAE.load(latent_run)
    with open(tiny_data / "manifest.csv") as f:
        files = [r["file"] for r in csv.DictReader(f)]
    encs = [m.read(p).first_bars(4) for p in files if len(m.read(p).bar_starts) >= 4][:6]

    def decode(a, z):
        out = m._from_latents(z, a.rhythm, a.polyphony, 0, 0, Sampling(0.0), a.timesigs)
        return T.encode_score(out, m.tokenizer, m.tables).ids.tolist()

    def outcomes():
        rows = []
        for a, b in zip(encs, encs[1:]):
            za, zb = m._latents(a), m._latents(b)
            own, zero, swap = decode(a, za), decode(a, torch.zeros_like(za)), decode(a, zb)
            rows.append((own != zero, own != swap))
        return rows

    rows = outcomes()
    assert sum(x and y for x, y in rows) >= 3, rows  # z changes the music for most songs

    with torch.no_grad():  # cut z out of every decoder layer's conditioning
        for proj in [*m.model.decoder.cond, m.model.bar_bias]:  # (the run has a bar bias)
            proj.weight[:, :m.config.model.d_latent] = 0
    assert not any(x or y for x, y in outcomes())


def test_latent_guidance_follows_the_latent_and_only_the_latent(latent_run, tiny_data):
    """Guidance moves each step's logits away from those with z = 0: with a song's latents
    greedy decoding changes, with z = 0 it must not (so it nulls z's columns and nothing
    else), and a model loads with the default and refuses a bad value in one line."""
    import csv

    import torch

    m = MusicVAE.load(latent_run)
    assert m.guidance == 0.5  # the default
    with open(tiny_data / "manifest.csv") as f:
        files = [r["file"] for r in csv.DictReader(f)]
    encs = [m.read(p).first_bars(4) for p in files if len(m.read(p).bar_starts) >= 4][:6]

    def decode(a, z, w):
        out = m._from_latents(z, a.rhythm, a.polyphony, 0, 0, Sampling(0.0, guidance=w),
                              a.timesigs)
        return T.encode_score(out, m.tokenizer, m.tables).ids.tolist()

    changed = 0
    for a in encs:
        za = m._latents(a)
        changed += decode(a, za, 0.0) != decode(a, za, 2.0)
        zero = torch.zeros_like(za)
        assert decode(a, zero, 0.0) == decode(a, zero, 2.0)
    assert changed >= 3, changed
    with pytest.raises(UserError, match="--guidance"):
        m.guidance = -0.5
    # a song's latents with other attributes (a transfer's shift) decode without guidance
    # unless it was set: the latents hold the bars' own rhythm and polyphony
    m.reconstruct(files[0], bars=2, seed=1)
    assert m.last_guidance == 0.5
    m.transfer(files[0], bars=2, rhythm_shift=2, seed=1)
    assert m.last_guidance == 0.0
    m.guidance = 0.25
    m.transfer(files[0], bars=2, rhythm_shift=2, seed=1)
    assert m.last_guidance == 0.25


def test_old_runs_without_the_new_settings_still_load(tiny_run, tmp_path):
    import shutil

    from mtvae.config import RunConfig

    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    raw = json.loads((old / "config.json").read_text())
    for k in ("word_dropout", "aux_weight", "context_dropout", "bag_weight"):
        raw["train"].pop(k)
    for k in ("aux_head", "bar_bias", "init_logvar", "note_bag", "latent_slots"):
        raw["model"].pop(k)
    cfg = RunConfig.from_json(json.dumps(raw))
    assert cfg.model.aux_head is False and cfg.model.bar_bias is False
    assert cfg.model.init_logvar == 0.0 and cfg.train.context_dropout == 0.0
    assert cfg.model.note_bag is False and cfg.model.latent_slots == 0
    assert cfg.train.aux_weight == 0.0
    raw["model"].pop("d_model")  # anything else missing is still refused
    with pytest.raises(UserError, match="missing d_model"):
        RunConfig.from_json(json.dumps(raw))


def test_coherent_prior_bars_share_part_of_their_latent(tiny_run):
    import torch

    m = MusicVAE.load(tiny_run, prior="normal")  # coherence is a way to draw from N(0, I)
    assert torch.equal(m._z_prior(6, 3), m._z_prior(6, 3, 0.0))  # earlier seeds unchanged
    one = m._z_prior(6, 3, 1.0)
    assert torch.allclose(one, one[:1].expand_as(one))  # a single latent for every bar
    z = torch.stack([m._z_prior(2, s, 0.5) for s in range(3000)])  # [draws, bars, d]
    assert z.var(0).mean().item() == pytest.approx(1.0, abs=0.05)  # each bar still N(0, I)
    a, b = z[:, 0] - z[:, 0].mean(0), z[:, 1] - z[:, 1].mean(0)
    corr = ((a * b).mean(0) / (a.std(0) * b.std(0))).mean().item()
    assert corr == pytest.approx(0.5, abs=0.05)
    # it reaches the pieces: the default is the independent prior, and coherence changes them
    same = m.sample(bars=4, seed=5, coherence=0.0)
    assert onsets(same) == onsets(m.sample(bars=4, seed=5))
    assert any(onsets(m.sample(bars=4, seed=s, coherence=0.9)) != onsets(m.sample(bars=4, seed=s))
               for s in range(5, 9))
