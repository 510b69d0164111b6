"""`pretrained` names the model that ships inside the package, wherever a RUN_DIR is read;
the shipped model loads offline, samples well-formed music, fits its size budget, and its
model card's figures are those `mtvae evaluate` measured."""

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from mtvae.cli import main
from mtvae.run import CONFIG, pretrained_dir

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = (pretrained_dir() / CONFIG).is_file()
needs_model = pytest.mark.skipif(not SHIPPED, reason="this version ships no model yet")


def test_pretrained_is_the_shipped_model_or_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no local folder named "pretrained"
    rc = main(["sample", "pretrained", "--bars", "1", "--out", str(tmp_path / "out")])
    if SHIPPED:
        assert rc == 0 and list((tmp_path / "out").glob("*.mid"))
    else:
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "ships no pretrained model yet" in err[0]


@needs_model
def test_the_shipped_model_loads_offline_and_writes_well_formed_music(monkeypatch):
    from mtvae import MusicVAE
    from mtvae.data import grammar as G
    from mtvae.data import tokens as T

    def refuse(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    files = [p for p in pretrained_dir().iterdir() if p.suffix == ".safetensors"]
    assert sum(p.stat().st_size for p in files) <= 25 * 2**20
    m = MusicVAE.load("pretrained")
    assert m.prior is not None and {"pop", "chorale", "folk"} <= set(m.genres)
    for genre in ("pop", "chorale", "folk"):
        score = m.sample(bars=4, genre=genre, seed=1)
        ids = T.encode_score(score, m.tokenizer, m.tables).ids.tolist()
        assert score.note_num() > 0
        assert G.errors(ids, m.grammar) == [], genre


@needs_model
def test_the_card_names_every_source_and_copies_the_evaluations():
    card = (pretrained_dir() / "MODEL_CARD.md").read_text()
    for needle in ("POP909", "MIT", "chorale", "folk", "Nottingham", "tokens", "steps",
                   "wall hours", "Known weaknesses"):
        assert needle in card, needle
    from mtvae import MusicVAE

    h = MusicVAE.load("pretrained").model_hash()
    assert h in card
    for genre in ("pop", "chorale", "folk"):
        ev = json.loads((ROOT / "bench" / "results" / f"ship_eval_{genre}.json").read_text())
        assert ev["model_hash"] == h and ev["genre"] == genre
        assert f"{ev['likelihood']['bits_per_token']:.3f}" in card
        assert f"{ev['reconstruction']['greedy']['chroma']:.3f}" in card


@pytest.mark.slow
@needs_model
def test_the_cards_pop_reconstruction_is_what_evaluate_measures_now(pop909):
    """A subset of the card recomputed: greedy reconstruction of the first POP909 test songs
    that `mtvae evaluate pretrained data/ship --genre pop` measured for the card (the split is
    by content hash, so the same songs in any DATA_DIR of POP909; evaluate decodes
    ``RECON_BATCH`` songs at a time, so its first batch is rechecked song by song), and the
    card's means are the means of evaluate's songs."""
    import hashlib

    from mtvae import MusicVAE
    from mtvae.data.pipeline import split_of
    from mtvae.evaluate import RECON_BATCH, held_out_songs, reconstruction

    ev = json.loads((ROOT / "bench" / "results" / "ship_eval_pop.json").read_text())
    rc = ev["reconstruction"]
    m = MusicVAE.load("pretrained")
    test = [p for p in pop909 if split_of(hashlib.sha1(p.read_bytes()).hexdigest()) == "test"]
    rng = np.random.default_rng(ev["seed"])
    songs = held_out_songs(m, test, min(ev["samples"], 16), ev["bars"], rng)
    assert [p.name for p in songs] == [r["song"] for r in rc["per_song"]]
    for k in ("chroma", "groove", "note_f1"):
        assert np.mean([r["greedy"][k] for r in rc["per_song"]]) == pytest.approx(
            rc["greedy"][k], abs=1e-9), k
    got = reconstruction(m, songs[:RECON_BATCH], ev["bars"], ev["seed"],
                         partners=songs[1:RECON_BATCH + 1], guidance=ev["guidance"],
                         greedy_only=True)
    for mine, theirs in zip(got["per_song"], rc["per_song"], strict=False):
        assert mine["song"] == theirs["song"]
        for k in ("chroma", "groove", "note_f1"):
            assert mine["greedy"][k] == pytest.approx(theirs["greedy"][k], abs=1e-6), (mine, k)
