"""Fine-tuning (``train --from``) and exported models (``mtvae export``)."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from mtvae import MusicVAE
from mtvae.cli import main
from mtvae.data import DataDir, prepare
from mtvae.data.tokens import FILL
from mtvae.data.windows import TrainWindows
from mtvae.run import RunDir
from mtvae.train import from_run, load_source_weights


@pytest.fixture(scope="module")
def jigs(tmp_path_factory, nottingham):
    """A DATA_DIR of folk tunes none of tiny_data's, as a genre tiny_run has not seen."""
    folder = tmp_path_factory.mktemp("jigs")
    for p in nottingham[60:76]:
        (folder / p.name).symlink_to(p)
    out = tmp_path_factory.mktemp("data") / "jigs"
    prepare([f"jigs={folder}"], out, workers=1, progress=False)
    return out


def test_source_weights_arrive_and_a_new_genre_starts_from_the_mean(tiny_run, jigs):
    data = DataDir(jigs)
    src, mcfg, genres = from_run(str(tiny_run), data, None, None)
    old = RunDir(tiny_run).config.data["genres"]
    assert genres[:len(data.genres)] == data.genres and set(old) <= set(genres)
    from mtvae.model import MTVAE

    model = MTVAE(mcfg)
    load_source_weights(model, src, genres)
    theirs = load_file(str(tiny_run / "model.safetensors"))
    mine = model.state_dict()
    for k, v in theirs.items():
        if k != "genre_emb.weight":
            assert torch.equal(mine[k], v), k
    rows = dict(zip(old, theirs["genre_emb.weight"]))
    for g, row in zip(genres, mine["genre_emb.weight"]):
        want = rows[g] if g in rows else theirs["genre_emb.weight"].mean(0)
        assert torch.allclose(row, want), g
    assert "jigs" not in old and "jigs" in genres


@pytest.mark.slow  # needs the full tiny_run (100 steps) to stand clear of a fresh model
def test_fine_tuning_starts_from_the_source_and_samples_the_new_genre(tiny_run, jigs, tmp_path,
                                                                      capsys):
    run = tmp_path / "ft"
    rc = main(["train", str(jigs), "--out", str(run), "--from", str(tiny_run), "--max-steps", "4",
               "--val-every", "4", "--prior-steps", "0", "--quiet"])
    assert rc == 0
    cfg = json.loads((run / "config.json").read_text())
    src = json.loads((tiny_run / "config.json").read_text())
    assert cfg["model"] | {"n_genres": 0} == src["model"] | {"n_genres": 0}
    assert cfg["data"]["from"]["weights_hash"] == RunDir(tiny_run).weights_hash()
    assert cfg["train"]["lr"] == pytest.approx(src["train"]["lr"] / 3)
    assert cfg["train"]["beta_warmup_steps"] == 0
    # it starts where the source is, not from scratch: its first loss is the source's level
    first = float(RunDir(run).metrics()[0]["ce"])
    scratch = tmp_path / "scratch"
    assert main(["train", str(jigs), "--out", str(scratch), "--preset", "tiny", "--max-steps", "4",
                 "--val-every", "4", "--prior-steps", "0", "--quiet", "--batch-size",
                 str(cfg["train"]["batch_size"]), "--segments", str(cfg["train"]["segments"])]) == 0
    assert first < float(RunDir(scratch).metrics()[0]["ce"]) - 0.5
    m = MusicVAE.load(run)
    assert "jigs" in m.genres and m.sample(bars=2, genre="jigs", seed=0).note_num() > 0
    # and it resumes like any run (the share of windows without their genre may change)
    assert cfg["train"]["genre_dropout"] == 0.1
    assert main(["train", str(jigs), "--out", str(run), "--resume", "--max-steps", "5",
                 "--genre-dropout", "0.2", "--quiet"]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["genre_dropout"] == 0.2


def test_genre_dropout_gives_windows_the_unknown_genre_and_changes_nothing_else(jigs):
    data = DataDir(jigs)
    store, jig = data.split("train"), data.genres.index("jigs")
    assert data.genres[0] == "unknown" and jig > 0
    fill = data.tokenizer.vocab[FILL]
    plain = TrainWindows(store, 256, 8, 96, 0, seed=3, infill=0.5, fill_id=fill)
    dropped = TrainWindows(store, 256, 8, 96, 0, seed=3, infill=0.5, fill_id=fill,
                           genre_dropout=0.5)
    unknown = 0
    for step in range(10):
        a, b = plain.batch(step), dropped.batch(step)
        for k in ("inputs", "targets", "bar_idx", "enc_tokens", "rhythm", "polyphony"):
            assert torch.equal(getattr(a, k), getattr(b, k)), k
        assert (a.genre == jig).all()
        assert ((b.genre == jig) | (b.genre == 0)).all()
        unknown += int((b.genre == 0).sum())
    assert 20 <= unknown <= 60  # of 80 windows, about half


def test_training_with_genre_dropout_trains_the_unknown_row(jigs, tmp_path):
    """With genre dropout 1 a run trains only the "unknown" genre row, not its songs' own, in
    the model and in the learnt prior (the run's setting reaches both)."""
    from mtvae.learnt_prior import _batch, encode_songs, prior_config

    run = tmp_path / "run"
    common = ["--preset", "tiny", "--batch-size", "2", "--segments", "1", "--val-every", "1",
              "--prior-steps", "0", "--genre-dropout", "1", "--quiet"]
    assert main(["train", str(jigs), "--out", str(run), "--max-steps", "1", *common]) == 0
    before = load_file(str(run / "last.safetensors"))["genre_emb.weight"]
    assert main(["train", str(jigs), "--out", str(run), "--resume", "--max-steps", "3",
                 *common]) == 0
    after = load_file(str(run / "last.safetensors"))["genre_emb.weight"]
    jig = DataDir(jigs).genres.index("jigs")
    moved = [not torch.equal(before[i], after[i]) for i in (0, jig)]
    assert moved == [True, False]
    # the learnt prior is fitted with the run's share
    cfg = RunDir(run).config
    pc = prior_config(cfg)
    assert pc.genre_dropout == 1.0
    m = MusicVAE.load(run, prior="normal")
    songs = encode_songs(m.model, DataDir(jigs).split("train"), range(4))
    g = _batch(songs, 64, 8, torch.Generator().manual_seed(0), pc.genre_dropout)[3]
    assert (g == 0).all()


def test_a_foreign_tokenizer_is_one_line_exit_2(tiny_run, jigs, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(jigs, other, symlinks=True)
    tok = json.loads((other / "tokenizer.json").read_text())
    tok["config"]["beat_res"] = {"0_4": 4, "4_12": 2}  # a coarser grid: other Position tokens
    (other / "tokenizer.json").write_text(json.dumps(tok))
    capsys.readouterr()
    rc = main(["train", str(other), "--out", str(tmp_path / "ft"), "--from", str(tiny_run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "tokenizer differs" in err[0], err
    assert not (tmp_path / "ft").exists()


def test_from_refuses_a_shape_and_resume(tiny_run, jigs, tmp_path, capsys):
    rc = main(["train", str(jigs), "--out", str(tmp_path / "a"), "--from", str(tiny_run),
               "--preset", "small"])
    assert rc == 2 and "shape" in capsys.readouterr().err
    rc = main(["train", str(jigs), "--out", str(tiny_run), "--from", str(tiny_run), "--resume"])
    assert rc == 2 and "--from" in capsys.readouterr().err


def test_an_exported_model_is_small_loads_and_fine_tunes(tiny_run, jigs, tmp_path):
    out = tmp_path / "exported"
    assert main(["export", str(tiny_run), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors",
                                                   "prior.safetensors", "tokenizer.json"]
    assert all(t.dtype == torch.float16 for t in load_file(str(out / "model.safetensors")).values())
    assert (out / "model.safetensors").stat().st_size < 0.6 * (tiny_run / "model.safetensors").stat().st_size
    a, b = MusicVAE.load(tiny_run), MusicVAE.load(out)
    assert b.prior is not None  # the learnt prior came along, tied to the new weights
    x, y = a.sample(bars=2, seed=3), b.sample(bars=2, seed=3)
    assert x.note_num() > 0 and y.note_num() > 0
    assert main(["train", str(jigs), "--out", str(tmp_path / "ft"), "--from", str(out),
                 "--max-steps", "2", "--val-every", "2", "--prior-steps", "0", "--quiet"]) == 0
    assert main(["export", str(tiny_run), str(out)]) == 2  # never over a model
