"""mtvae evaluate end to end on a tiny model: every field of the JSON is there, and the
reconstruction, music-statistics and memorisation numbers agree with independent
recomputations."""

import json
import math

import numpy as np

import pytest

from mtvae import MusicVAE
from mtvae import metrics as M
from mtvae.cli import main
from mtvae.data import DataDir
from mtvae.data import tokens as T
from mtvae.generate import Plan


def longest_copied_run(ids, corpus: str) -> int:
    """Brute force: the longest run of ``ids`` found verbatim in ``corpus`` (tokens as chars)."""
    s = as_text(ids)
    n = 0
    while n < len(s) and any(s[i:i + n + 1] in corpus for i in range(len(s) - n)):
        n += 1
    return n


def as_text(ids) -> str:
    return "".join(chr(0x100 + int(i)) for i in ids)


@pytest.mark.slow
def test_evaluate_writes_every_field(tiny_run, tiny_data, tmp_path, capsys):
    out = tmp_path / "eval.json"
    samples = tmp_path / "other"
    samples.mkdir()
    assert main(["sample", str(tiny_run), "--bars", "2", "--n", "2", "--seed", "3", "--no-audio",
                 "--out", str(samples), "--quiet"]) == 0
    # the test split itself as a compared set: it must match the split perfectly
    data = DataDir(tiny_data)
    test_songs = [str(p) for p in data.files("test")]
    itself = tmp_path / "itself"
    itself.mkdir()
    for k, p in enumerate(test_songs):
        (itself / f"{k:03d}.mid").symlink_to(p)
    code = main(["evaluate", str(tiny_run), str(tiny_data), "--split", "test", "--samples", "2",
                 "--bars", "2", "--max-windows", "4", "--json", str(out), "--quiet",
                 "--compare", f"other={samples}", "--compare", f"itself={itself}",
                 "--top-k", "40"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "bits per token" in printed and "Spearman" in printed and "latent swap" in printed
    r = json.loads(out.read_text())
    assert r["sampling"] == {"temperature": 1.0, "top_k": 40, "top_p": None, "coherence": 0.0}
    # training fitted a learnt prior: prior samples and the second ELBO use it
    assert r["prior"] == "learnt" and "prior samples' latents: learnt prior" in printed
    assert math.isfinite(r["likelihood"]["learnt_prior"]["bits_per_token"])
    lk = r["likelihood"]
    for key in ("bits_per_token", "bits_per_note", "elbo_nats_per_token", "kl_nats_per_bar",
                "teacher_forced_token_accuracy", "active_units"):
        assert math.isfinite(lk[key]), key
    assert lk["bits_per_note"] > lk["bits_per_token"]  # several tokens per note
    m = MusicVAE.load(tiny_run)
    # control, recomputed through the public API: one sample per class (2 samples // 4),
    # seeded 100 apart, the classes measured on what comes out
    edges = m.config.data["attribute_edges"]
    for attr in ("rhythm", "polyphony"):
        asked, measured = [], []
        for c in range(8):
            piece = m.sample(bars=2, seed=100 * c, top_k=40, **{attr: c})
            enc = T.encode_score(piece, m.tokenizer, m.tables)
            got = T.attribute_classes(getattr(enc, attr), edges[attr]).tolist()
            asked += [c] * len(got)
            measured += got
        ct = r["control"][attr]
        assert ct["bars"] == len(measured) == 16
        assert ct["spearman_rho"] == M.spearman(asked, measured) or (
            math.isnan(ct["spearman_rho"]) and math.isnan(M.spearman(asked, measured)))

    # reconstruction, recomputed through the public API: the first 2 bars of the one test song
    # with 2 bars or more (the tiny test split has fewer songs than --samples), greedy from its
    # posterior means, and its partner (from train, the split having one song) as the floor
    songs = [p for p in test_songs if len(m.read(p).bar_starts) >= 2]
    assert len(songs) == 1 and r["reconstruction"]["songs"] == 1
    train_songs = data.files("train")
    partner = next(p for p in train_songs if len(m.read(p).bar_starts) >= 2)
    ref = m.tokenizer.decode(m.read(songs[0]).first_bars(2).ids.tolist())
    other = m.tokenizer.decode(m.read(partner).first_bars(2).ids.tolist())
    greedy = m.reconstruct(songs[0], bars=2, temperature=0)
    rc = r["reconstruction"]
    assert rc["greedy"] == M.bar_similarity(ref, greedy, 2)
    assert rc["floor"] == M.bar_similarity(ref, other, 2)
    sampled = m.reconstruct(songs[0], bars=2, temperature=1.0, seed=0)
    assert rc["sampled"] == M.bar_similarity(ref, sampled, 2)
    # the swap: the song's attributes and meters with the partner's latents, greedy
    ea = m.read(songs[0]).first_bars(2)
    plan = Plan(m.conditions(m.encode(partner, bars=2), ea.rhythm, ea.polyphony), 2,
                timesigs=[int(t) for t in ea.timesigs])
    swapped = m.decode([plan], m.sampling(temperature=0.0, seed=0))[0]
    (ca, ga), (cb, gb), (co, go) = (M.bar_profiles(x, 2) for x in (ref, other, swapped))
    follows = np.mean(M.row_cosine(co, cb) > M.row_cosine(co, ca))
    assert rc["latent_swap"]["chroma_follows_donor"] == follows
    assert rc["latent_swap"]["bars"] == 2

    stats = r["music_statistics"]
    assert set(stats) == {"mtvae", "train (ceiling)", "other", "itself"}
    for name in stats:
        assert {"pitch_range", "polyphony", "groove_consistency", "scale_consistency",
                "empty_bar_rate", "pitch_class_histogram"} <= set(stats[name])
    # the split compared with itself overlaps completely; the tiny model's samples do not
    for feat, v in stats["itself"].items():
        assert abs(v["overlap"] - 1) < 1e-9 and abs(v["kl"]) < 1e-9, feat
    assert np.mean([v["overlap"] for v in stats["mtvae"].values()]) < 0.9

    # memorisation, recomputed by brute force on the same prior samples (seed 0, top-k 40)
    train = DataDir(tiny_data).split("train")
    corpus = "\x00".join(as_text(train.ids(i)) for i in range(len(train)))
    gen = m.sample(bars=2, n=2, seed=0, top_k=40)
    gen_ids = [T.encode_score(g, m.tokenizer, m.tables).ids for g in gen]
    runs = [longest_copied_run(x, corpus) for x in gen_ids]
    mem = r["memorisation"]
    assert mem["longest_copied_run"]["median"] == np.median(runs)
    assert mem["longest_copied_run"]["max"] == max(runs)
    assert mem["sample_tokens"]["max"] == max(len(x) for x in gen_ids)


def test_likelihood_by_position_reads_each_song_from_its_start(tiny_run, tiny_data):
    """Bits per token by position: every target token of each song up to the length counted
    in its band, once; the figures are real likelihoods (finite, positive)."""
    from mtvae.evaluate import likelihood_by_position

    m = MusicVAE.load(tiny_run)
    store = DataDir(tiny_data).split("train")
    songs = list(range(min(3, len(store))))
    r = likelihood_by_position(m, DataDir(tiny_data), "train", 1000, songs=songs, batch_size=2)
    seg = m.config.model.seg_len
    assert r["length"] == -(-1000 // seg) * seg and r["songs"] == len(songs)
    reach = [min(r["length"], len(store.ids(s)) - 1) for s in songs]
    assert [b["from"] for b in r["bands"]] == [0, 512]
    for b in r["bands"]:
        assert b["tokens"] == sum(int(np.clip(n - b["from"], 0, b["to"] - b["from"])) for n in reach)
        if b["tokens"]:
            assert 0 < b["bits_per_token"] < math.log2(len(m.tokenizer)), b
