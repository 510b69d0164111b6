"""Generation: cached decoding equals full decoding, well-formed tokens (checked by MidiTok),
bars, determinism, every command writes MIDI + PNG + WAV, interpolation ends and transfer,
bad input, the demo page."""

import json
import re
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch

from mtvae import MusicVAE, api
from mtvae.cli import main
from mtvae.data import DataDir
from mtvae.data import grammar as G
from mtvae.data import tokens as T
from mtvae.data.windows import TrainWindows
from mtvae.generate import Sampling
from mtvae.render import write_wav


@pytest.fixture(scope="module")
def vae(tiny_run):
    return MusicVAE.load(tiny_run)


def bars_of(score: symusic.Score, vae: MusicVAE) -> int:
    return len(T.encode_score(score, vae.tokenizer, vae.tables).bar_starts)


def test_cached_decoding_equals_full_decoding_across_memory(vae, tiny_data):
    model, cfg = vae.model, vae.model.cfg
    S = cfg.seg_len
    n = 6 * S  # well past the memory (64 tokens) and into the compressed memory
    batch = TrainWindows(DataDir(tiny_data).split("train"), n, 2, cfg.max_bar_len, cfg.pad_id).batch(0)
    z = torch.randn(2, batch.bar_mask.shape[1], model.d_cond)
    cond = torch.gather(z, 1, batch.bar_idx[..., None].expand(-1, -1, z.shape[-1]))
    with torch.no_grad():
        full, memory, _ = model.decode(batch.inputs, cond)
        assert memory.lengths == (cfg.mem_len, cfg.cmem_len)  # both memories are in use
        state = model.decoder.start(model.decoder.empty_memory(2, "cpu"))
        steps = []
        for t in range(n):
            logits, state = model.step(batch.inputs[:, t], cond[:, t], state)
            steps.append(logits)
    cached = torch.stack(steps, dim=1)
    assert torch.allclose(cached, full, atol=1e-4, rtol=1e-4)


def assert_well_formed(ids: list[int], vae: MusicVAE) -> None:
    """The grammar's checker (data/grammar.py), and MidiTok's own REMI checker on what it
    covers (token-type successions, positions rising inside a bar): the two must agree."""
    errors = G.errors(ids, vae.grammar)
    assert errors == [], (errors, [vae.tokenizer[i] for i in ids])
    assert vae.tokenizer.tokens_errors(ids) == 0, [vae.tokenizer[i] for i in ids]


def test_the_grammar_refuses_what_midi_tok_refuses_and_more(vae):
    """Malformed sequences are caught by mtvae's checker; those MidiTok's checker also
    understands are caught by it too (the cross-check), and what MidiTok does not check
    (the bar's length, drums on the drum program, a pitch struck twice at one onset on one
    program) is still caught by ours."""
    tok, v, g = vae.tokenizer, vae.tokenizer.vocab, vae.grammar
    good = ["Bar_None", "TimeSig_3/4", "Position_0", "Program_0", "Pitch_60", "Velocity_63",
            "Duration_1.0.8", "Program_0", "Pitch_64", "Velocity_63", "Duration_1.0.8",
            "Position_8", "Program_-1", "PitchDrum_36", "Velocity_63",
            "Duration_1.0.8", "Bar_None", "TimeSig_3/4", "Position_23", "Program_0", "Pitch_62",
            "Velocity_63", "Duration_1.0.8"]
    assert_well_formed([v[t] for t in good], vae)
    both = [good[:1] + ["Pitch_60"] + good[1:],  # a Pitch right after Bar
            good[:11] + ["Position_0"] + good[12:]]  # a position that does not move forward
    ours = [good[:18] + ["Position_24"] + good[19:],  # past the end of a 3/4 bar
            good[:13] + ["Pitch_36"] + good[14:],  # a pitched note on the drum program
            good[:4] + ["PitchDrum_60"] + good[5:],  # a drum note on a pitched program
            good[:8] + ["Pitch_60"] + good[9:]]  # the same pitch twice at one onset
    for seq in both + ours:
        ids = [v[t] for t in seq]
        assert G.errors(ids, g), seq
    for seq in both:
        assert tok.tokens_errors([v[t] for t in seq]) > 0, seq
    # the same pitch at one onset on another program, or at the next onset, is music
    fine = good[:7] + ["Program_40"] + good[8:]
    assert G.errors([v[t] for t in fine], g) == []
    assert G.duplicate_notes([v[t] for t in good[:8] + ["Pitch_60"] + good[9:]], g) == (4, 1)


def test_generation_never_strikes_a_pitch_twice_at_one_onset(vae, monkeypatch):
    """The mask keeps out a pitch already struck at the onset on the program, and the token
    streams sampling writes (hot, from a barely trained model) hold no such note."""
    st = G.SeqState()
    for t in ["Bar_None", "TimeSig_4/4", "Position_0", "Program_0", "Pitch_60", "Velocity_63",
              "Duration_1.0.8", "Program_0"]:
        st.update(vae.grammar, vae.tokenizer.vocab[t])
    mask = G.allowed(vae.grammar, st, bars=1)
    assert not mask[vae.tokenizer.vocab["Pitch_60"]] and mask[vae.tokenizer.vocab["Pitch_61"]]
    written = []
    generate = vae.generate

    def spy(*args, **kwargs):
        written.extend(generate(*args, **kwargs))
        return written[-len(args[0]):]

    monkeypatch.setattr(vae, "generate", spy)
    vae.sample(bars=8, n=6, seed=11, temperature=1.5)
    counts = [G.duplicate_notes(ids, vae.grammar) for ids in written]
    assert sum(n for n, _ in counts) > 500 and sum(d for _, d in counts) == 0, counts


def test_samples_are_well_formed_with_exactly_the_bars_asked(vae, monkeypatch):
    generated = []  # the raw token ids, before MidiTok decodes them into a score

    def spy(*args, **kwargs):
        outs = real_generate(*args, **kwargs)
        generated.extend(outs)
        return outs

    real_generate = api.generate
    monkeypatch.setattr(api, "generate", spy)
    bar = vae.tokenizer.vocab["Bar_None"]
    for bars, seed in ((1, 0), (3, 1), (6, 2)):
        score = vae.sample(bars=bars, seed=seed)
        ids = generated[-1]
        assert ids[0] == bar and ids.count(bar) == bars
        assert_well_formed(ids, vae)
        assert bars_of(score, vae) == bars


def test_the_same_seed_gives_the_same_midi_bytes(vae, tmp_path):
    a, b, c = (vae.sample(bars=2, seed=s, temperature=0.9, top_p=0.95) for s in (5, 5, 6))
    for s, name in ((a, "a"), (b, "b"), (c, "c")):
        s.dump_midi(tmp_path / f"{name}.mid")
    assert (tmp_path / "a.mid").read_bytes() == (tmp_path / "b.mid").read_bytes()
    assert (tmp_path / "a.mid").read_bytes() != (tmp_path / "c.mid").read_bytes()


def test_interpolation_ends_are_the_reconstructions_and_transfer_keeps_the_bars(
        vae, nottingham, tmp_path):
    a, b = nottingham[0], nottingham[1]
    two = vae.interpolate(a, b, steps=2, bars=3, seed=4)
    same = lambda x, y: x.dump_midi(tmp_path / "x.mid") or y.dump_midi(tmp_path / "y.mid") or (
        (tmp_path / "x.mid").read_bytes() == (tmp_path / "y.mid").read_bytes())  # noqa: E731
    assert same(two[0], vae.reconstruct(a, bars=3, seed=4))
    assert same(two[1], vae.reconstruct(b, bars=3, seed=4))
    assert vae.encode(a, bars=3).shape == (3, vae.model.cfg.d_latent)
    # transfer writes exactly the input's bars (bars=None: all of them), and the shift reaches
    # the decoder: every bar asked at the top rhythm class changes the music for some seeds
    # (a shift that never reached it would change none). (The 30-step tiny model does not
    # follow the classes reliably enough to assert the measured rhythm goes up.)
    short = vae.tokenizer.decode(vae.read(a).first_bars(3).ids.tolist())
    assert bars_of(short, vae) == 3
    changed = []
    for seed in (4, 5, 6, 7):
        kept = vae.transfer(short, bars=None, seed=seed)
        shifted = vae.transfer(short, bars=None, rhythm_shift=7, seed=seed)
        assert bars_of(kept, vae) == bars_of(shifted, vae) == 3
        changed.append(not same(kept, shifted))
    assert any(changed), changed


def check_outputs(out: Path, names: list[str], bars: list[int], vae) -> dict:
    settings = json.loads((out / "settings.json").read_text())
    assert len(settings["files"]) == len(names) and settings["model_hash"] == vae.model_hash()
    for name, n in zip(names, bars):
        score = symusic.Score(out / f"{name}.mid")
        assert bars_of(score, vae) == n, name
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with wave.open(str(out / f"{name}.wav")) as w:
            assert w.getnframes() > 0
    return settings


def notes(score: symusic.Score) -> list[tuple]:
    tpq = score.ticks_per_quarter
    return sorted((t.program, n.time / tpq, n.duration / tpq, n.pitch, n.velocity)
                  for t in score.tracks for n in t.notes)


def test_every_command_writes_midi_png_and_wav(tiny_run, vae, nottingham, tmp_path, capsys):
    a, b = str(nottingham[0]), str(nottingham[1])
    r = str(tiny_run)
    assert main(["sample", r, "--bars", "3", "--n", "2", "--seed", "1", "--out", str(tmp_path / "s"),
                 "--quiet"]) == 0
    s = check_outputs(tmp_path / "s", ["sample_01", "sample_02"], [3, 3], vae)
    assert s["sampling"]["seed"] == 1 and s["sampling"]["guidance"] == 0.5 and s["bars"] == 3
    # settings.json holds the whole Sampling: the API makes the same pieces from it
    again = vae.sample(bars=3, n=2, sampling=Sampling(**s["sampling"]))
    for piece, name in zip(again, ["sample_01", "sample_02"]):
        written = symusic.Score(tmp_path / "s" / f"{name}.mid")
        assert notes(piece) == notes(written), name
    assert main(["continue", r, a, "--bars", "2", "--out", str(tmp_path / "c"), "--quiet"]) == 0
    check_outputs(tmp_path / "c", ["continuation"], [bars_of(symusic.Score(a), vae) + 2], vae)
    assert main(["interpolate", r, a, b, "--steps", "3", "--bars", "2", "--out",
                 str(tmp_path / "i"), "--quiet"]) == 0
    check_outputs(tmp_path / "i", ["interp_01", "interp_02", "interp_03"], [2, 2, 2], vae)
    assert main(["reconstruct", r, a, "--bars", "4", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    s = check_outputs(tmp_path / "r", ["reconstruction"], [4], vae)
    # the reported accuracy is the teacher-forced accuracy of the first 4 bars of a
    enc = vae.read(a).first_bars(4)
    expected = float(np.mean(vae.teacher_forced_logits(enc).argmax(-1).numpy() == enc.ids[1:]))
    assert s["token_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert re.search(r"token accuracy .*: 0\.\d+", capsys.readouterr().out)
    assert main(["transfer", r, a, "--rhythm-shift", "2", "--bars", "3", "--out",
                 str(tmp_path / "t"), "--quiet"]) == 0
    check_outputs(tmp_path / "t", ["transfer"], [3], vae)
    png, wav = tmp_path / "x.png", tmp_path / "x.wav"
    assert main(["render", a, "--png", str(png), "--wav", str(wav)]) == 0
    assert png.stat().st_size > 0 and wave.open(str(wav)).getnframes() > 0


def test_generation_bad_input(tiny_run, nottingham, bad_midi, tmp_path, capsys):
    r, a = str(tiny_run), str(nottingham[0])
    cases = [
        (["continue", r, str(bad_midi / "ValueError_Control168.mid")], "not valid MIDI"),
        (["interpolate", r, a, str(nottingham[1]), "--bars", "99"], "the first song has only"),
        (["sample", r, "--genre", "Polka"], "this model knows: unknown"),
        (["sample", str(tmp_path)], "no trained weights"),
        (["render", str(bad_midi / "ValueError_Control168.mid")], "not valid MIDI"),
    ]
    for argv, message in cases:
        code = main(argv + (["--out", str(tmp_path / "x")] if argv[0] != "render" else []))
        err = [ln for ln in capsys.readouterr().err.strip().splitlines() if "%|" not in ln]
        assert code == 2 and len(err) == 1 and message in err[0], (argv, err)


def test_builtin_synthesiser_when_fluidsynth_is_missing(nottingham, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    score = symusic.Score(nottingham[0])
    assert write_wav(score, tmp_path / "a.wav", quiet=True) == "builtin"
    with wave.open(str(tmp_path / "a.wav")) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        seconds = w.getnframes() / w.getframerate()
    assert audio.std() > 100  # not silence
    assert abs(seconds - score.to("second").end()) < 1.0


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="CI installs fluidsynth")
def test_fluidsynth_renders_with_the_general_midi_soundfont(nottingham, tmp_path):
    assert write_wav(symusic.Score(nottingham[0]), tmp_path / "a.wav") == "fluidsynth"
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert w.getframerate() == 44100 and w.getnframes() > 44100


def test_demo_page_references_only_files_that_exist(vae, nottingham, tmp_path):
    from mtvae.demo import write_index
    from mtvae.render import render

    rows = [("Samples", "s1", "one", render(vae.sample(bars=1, seed=0), tmp_path / "s1")),
            ("Reconstruction", "r", "two", render(vae.reconstruct(nottingham[0], bars=2),
                                                  tmp_path / "r", wav=False))]
    page = write_index(tmp_path, rows, vae.run_dir / "loss.png").read_text()
    refs = re.findall(r"(?:src|href)='([^']+)'", page)
    assert {"loss.png", "s1.png", "s1.wav", "s1.mid", "r.png", "r.mid"} <= set(refs)
    assert all((tmp_path / ref).is_file() for ref in refs)


@pytest.mark.slow
def test_the_demo_runs_end_to_end(tiny_run, nottingham, tmp_path):
    """``make demo``'s job with a model of ours in the shipped one's place, a few folk tunes as
    the new genre and seconds of fine-tuning: every piece of the gallery is written, by the
    model and by its fine-tuned copy, and the page references only files that exist."""
    from mtvae.demo import run_demo

    songs = tmp_path / "songs"
    songs.mkdir()
    for p in nottingham[40:56]:
        (songs / p.name).symlink_to(p)
    index = run_demo(tmp_path / "demo", minutes=0.05, source=f"reels={songs}",
                     model=str(tiny_run), prior_steps=0)
    out, page = index.parent, index.read_text()
    refs = re.findall(r"(?:src|href)='([^']+)'", page)
    names = {Path(r).stem for r in refs if r.endswith(".mid")}
    assert {"continuation", "interp_1", "reconstruction", "infill_new", "tuned_reels_1",
            "tuned_continuation"} <= names
    assert any(n.startswith("sample_") for n in names)
    assert f"the model in {tiny_run}" in page and "the fine-tuned model" in page
    assert all((out / ref).is_file() for ref in refs)

