"""The learnt prior over bar latents (``mtvae prior``): fitted to what the encoder writes for
real songs, used by sample / continue / infill / evaluate, refused with one line when stale or
damaged."""

import json
import shutil

import numpy as np
import pytest
import torch

from mtvae import MusicVAE
from mtvae import checkpoint as ck
from mtvae import run as R
from mtvae.cli import main
from mtvae.data import DataDir
from mtvae.errors import UserError
from mtvae.model import MTVAE
from mtvae.learnt_prior import encode_songs


@pytest.fixture(scope="module")
def prior_run(tiny_run):
    """The default design (a latent that holds much, 2 nats per dimension: what a learnt
    prior is for, as its aggregate posterior is far from N(0, I)), whose training fitted
    the prior at its end."""
    summary = json.loads(ck.weights_metadata(tiny_run / R.PRIOR)["summary"])
    s = json.loads((tiny_run / R.SUMMARY).read_text())
    assert s["prior"]["valid_nll_per_bar"] == summary["valid_nll_per_bar"]
    return tiny_run, summary


@pytest.mark.slow
def test_the_prior_fits_the_latents_better_than_a_standard_normal(prior_run):
    run, s = prior_run
    assert (run / "prior.safetensors").is_file()
    assert s["train_songs"] > 10 and s["valid_songs"] >= 1
    # held-out songs' latents are far likelier under the fitted prior than under N(0, I)
    assert s["valid_nll_per_bar"] < s["valid_nll_standard_normal"] - 10


@pytest.mark.slow
def test_the_prior_reads_the_bars_before(prior_run, tiny_data):
    """Each bar's density given its own song's previous bars beats the same bars given
    another song's: the prior models the sequence, not only the bars one by one."""
    run, _ = prior_run
    m = MusicVAE.load(run)
    store = DataDir(tiny_data).split("train")
    songs = [s for s in encode_songs(m.model, store, range(len(store))) if len(s["mu"]) >= 8][:12]
    own = other = 0.0
    with torch.no_grad():
        for i, s in enumerate(songs):
            donor = songs[(i + 1) % len(songs)]
            z, zd = s["mu"][:8], donor["mu"][:8]
            r, p, g = s["rhythm"][None, :8], s["polyphony"][None, :8], torch.tensor([s["genre"]])
            # the last 4 bars, after 4 bars of the own song or of the donor
            own += float(m.prior.nll(z[None], r, p, g)[0, 4:].sum())
            mixed = torch.cat([zd[:4], z[4:]])[None]
            other += float(m.prior.nll(mixed, r, p, g)[0, 4:].sum())
    assert own < other


def test_sampling_uses_the_learnt_prior(prior_run, nottingham):
    run, _ = prior_run
    learnt = MusicVAE.load(run)
    normal = MusicVAE.load(run, prior="normal")
    assert learnt.prior is not None and normal.prior is None
    r = p = np.full(6, 3)
    a, b = learnt._z_prior(6, 1, 0.0, r, p, 0), learnt._z_prior(6, 1, 0.0, r, p, 0)
    assert torch.equal(a, b)  # seeded
    zn = normal._z_prior(6, 1)
    # the learnt prior's draws have the encoder's scale, not N(0, I)'s
    std = learnt.prior.z_std
    assert abs(float(a.std(0).mean() / std.mean()) - 1) < abs(float(zn.std(0).mean() / std.mean()) - 1)
    # sample, continue and infill draw new bars' latents from it; continue and infill give
    # it the latents of the bars before
    calls = []
    draw = learnt.prior.sample

    def spy(r, p, g, context=None, *a, **k):
        calls.append(0 if context is None else context.shape[1])
        return draw(r, p, g, context, *a, **k)

    learnt.prior.sample = spy
    assert learnt.sample(bars=4, seed=3).note_num() > 0
    learnt.continue_(nottingham[0], bars=2, seed=3)
    learnt.infill(nottingham[0], "3-4", seed=3)
    assert calls[0] == 0 and calls[1] > 0 and calls[2] == 2


def test_a_stale_or_damaged_prior_is_refused_in_one_line(prior_run, tmp_path, capsys):
    run, _ = prior_run
    stale = tmp_path / "stale"
    shutil.copytree(run, stale, ignore=shutil.ignore_patterns(".lock"))
    cfg = MusicVAE.load(stale).config
    model = MTVAE(cfg.model)  # other weights under the same name: the prior no longer fits
    ck.save_weights(model, stale / R.BEST)
    with pytest.raises(UserError, match="fitted to other weights"):
        MusicVAE.load(stale)
    assert MusicVAE.load(stale, prior="normal").prior is None  # the way round it
    (stale / R.PRIOR).write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="damaged"):
        MusicVAE.load(stale)
    (stale / R.PRIOR).unlink()
    capsys.readouterr()
    assert MusicVAE.load(stale).prior is None  # auto: no prior, N(0, I), and a note says so
    assert "has no learnt prior" in capsys.readouterr().err
    with pytest.raises(UserError, match="no learnt prior"):
        MusicVAE.load(stale, prior="learnt")
    rc = main(["sample", str(stale), "--prior", "learnt", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "mtvae prior" in err[0]


def test_the_prior_command_fits_it_again(prior_run, tiny_data, tmp_path, capsys):
    run = tmp_path / "again"
    shutil.copytree(prior_run[0], run, ignore=shutil.ignore_patterns(".lock"))
    before = ck.file_hash(run / R.PRIOR)
    assert main(["prior", str(run), str(tiny_data), "--steps", "30", "--seed", "1",
                 "--quiet"]) == 0
    assert "nats per bar" in capsys.readouterr().out
    assert ck.file_hash(run / R.PRIOR) != before
    assert MusicVAE.load(run).prior.cfg.steps == 30


def test_prior_command_refuses_a_run_without_latents(tiny_data, tmp_path, capsys):
    rc = main(["prior", str(tmp_path / "nothing"), str(tiny_data)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no trained weights" in err[0]


@pytest.mark.slow
def test_the_elbo_with_the_learnt_prior_is_tighter(prior_run, tiny_data):
    """The same bound with the learnt prior in place of N(0, I): the reconstruction term is
    shared, the KL to a prior fitted to the aggregate posterior is far smaller."""
    from mtvae.evaluate import likelihood

    lk = likelihood(MusicVAE.load(prior_run[0]), DataDir(tiny_data), "valid", max_windows=8)
    lp = lk["learnt_prior"]
    assert lp["kl_nats_per_bar"] < lk["kl_nats_per_bar"] - 10
    assert lp["bits_per_token"] < lk["bits_per_token"]
    assert "learnt_prior" not in likelihood(MusicVAE.load(prior_run[0], prior="normal"),
                                            DataDir(tiny_data), "valid", max_windows=8)
