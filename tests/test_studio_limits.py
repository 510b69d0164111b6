"""The studio's own rules, without a browser: uploads checked before any call, requests
bounded, results kept per tab (tests/test_studio.py drives the page itself)."""

import pytest
import symusic

from mtvae import MusicVAE
from mtvae import studio as S
from mtvae.errors import UserError


@pytest.fixture(scope="module")
def st(tiny_run, tmp_path_factory):
    return S.Studio(MusicVAE.load(tiny_run), tmp_path_factory.mktemp("studio"))


def test_uploads_are_checked_before_the_model_reads_them(st, tmp_path, nottingham):
    with pytest.raises(UserError, match="upload a MIDI file"):
        st.song(None)
    notes = tmp_path / "notes.txt"
    notes.write_text("la la")
    with pytest.raises(UserError, match=r"must be a MIDI file \(.mid or .midi\)"):
        st.song(notes)
    big = tmp_path / "big.mid"
    big.write_bytes(b"MThd" + b"\0" * (S.MAX_UPLOAD_BYTES + 1))
    with pytest.raises(UserError, match="up to 2 MB"):
        st.song(big)
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"not a midi file at all")
    with pytest.raises(UserError) as e:
        st.song(junk)
    assert str(e.value).startswith("junk.mid") and str(tmp_path) not in str(e.value)
    path, enc = st.song(nottingham[3])
    assert path == str(nottingham[3]) and len(enc.bar_starts) > 4


def test_requests_are_bounded_and_curves_parsed(st):
    assert st.curve(" 0, 1;2 3 ", "rhythm") == [0, 1, 2, 3] and st.curve("", "rhythm") is None
    with pytest.raises(UserError, match="rhythm curve is whole numbers"):
        st.curve("fast", "rhythm")
    with pytest.raises(UserError, match="1 to 32"):
        st.bars(S.MAX_BARS + 1)
    with pytest.raises(UserError, match="steps: 1 to 8"):
        st.bars(9, "steps", S.MAX_STEPS)
    assert st.sampling(0.8, 1.0, 0.5, None) == {"temperature": 0.8, "top_p": None,
                                                 "guidance": 0.5}


def test_pieces_are_kept_with_their_files_and_capped(st, nottingham, monkeypatch):
    pieces = []
    piece, pieces = st.interpolate(pieces, str(nottingham[3]), str(nottingham[4]), 3, 1,
                                   seed=1)
    assert [p.name for p in pieces] == ["1. interpolate", "2. interpolate", "3. interpolate"]
    assert piece.how.startswith("t=1.00") and piece.midi.endswith("03-interpolate.mid")
    assert len(symusic.Score(piece.midi).tracks) > 0
    monkeypatch.setattr(S, "MAX_RESULTS", 4)
    piece, pieces = st.sample(pieces, None, 1, None, "", "", seed=2)
    piece, pieces = st.sample(pieces, None, 1, None, "", "", seed=3)
    assert len(pieces) == 4 and pieces[0].name == "2. interpolate"  # the oldest went
    piece, pieces = st.sample(pieces, None, 1, None, "", "", seed=4)
    assert [p.name for p in pieces] == ["3. interpolate", "4. sample", "5. sample", "6. sample"]


def test_samples_of_several_tabs_share_a_batch_and_keep_their_own_music(tiny_run):
    """Four tabs ask at once: their pieces come out of fewer decodes than requests, each the
    very piece its settings make alone; settings that differ never share a batch; a failure
    reaches every request of its batch."""
    import threading

    vae = MusicVAE.load(tiny_run)
    alone = {seed: vae.sample(bars=2, seed=seed, top_k=40) for seed in range(4)}
    batches = []
    decode = vae.decode

    def counting(plans, sampling):
        batches.append((len(plans), sampling.temperature))
        return decode(plans, sampling)

    vae.decode = counting
    b = S.Batcher(vae, max_pieces=4, wait_s=0.3)
    got, errors = {}, []

    def ask(seed, temperature=1.0):
        try:
            plans, s = vae.sample_plans(bars=2, seed=seed, top_k=40, temperature=temperature)
            got[(seed, temperature)] = b.decode(plans, s)[0]
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(seed,)) for seed in range(4)]
    threads.append(threading.Thread(target=ask, args=(9, 0.5)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for seed in range(4):
        assert got[(seed, 1.0)].dumps_midi() == alone[seed].dumps_midi(), seed
    assert sum(n for n, _ in batches) == 5 and len(batches) < 5
    assert all(n == 1 for n, t in batches if t == 0.5)  # its own batch

    def broken(plans, sampling):
        raise RuntimeError("no")

    vae.decode = broken
    with pytest.raises(RuntimeError, match="no"):
        ask_plans, s = vae.sample_plans(bars=2, seed=1)
        b.decode(ask_plans, s)
    assert not b.busy and not b.pending
