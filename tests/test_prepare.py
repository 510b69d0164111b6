"""prepare: sources, labels, filters, splits, cache, bad input and crash safety."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import symusic

from mtvae.cli import main
from mtvae.data import DataDir, prepare
from mtvae.data import pipeline as prepare_module
from mtvae.errors import UserError


def put(src: Path, dst: Path, program: int | None = None) -> Path:
    """Write a real song to dst, optionally giving its first track a General MIDI program."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if program is None:
        shutil.copyfile(src, dst)
    else:
        s = symusic.Score(src)
        s.tracks[0].program = program
        s.dump_midi(dst)
    return dst


def manifest(out: Path) -> list[dict]:
    with open(out / "manifest.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def clean_midi(tmp_path, nottingham, bad_midi):
    """A small clean_midi tree (Artist/Title.mid, Title.1.mid) and an artist,title,genre file."""
    root = tmp_path / "clean_midi"
    songs = [  # artist, file, program (None: keep the song's own, which is 0), genre
        ("Artist A", "Song One.mid", 25, "Rock"),
        ("Artist A", "Song One.1.mid", 25, None),  # second version: labelled through its title
        ("Artist A", "Song Two.mid", None, "Rock"),
        ("Artist B", "Song Three.mid", 25, "Blues"),
        ("Artist B", "Song Four.mid", 25, "Blues"),
        ("Artist B", "Song Five.mid", None, "Blues"),
        ("Artist C", "Song Six.mid", 25, "Jazz"),
    ]
    for k, (artist, name, program, _) in enumerate(songs):
        put(nottingham[10 + k], root / artist / name, program)
    shutil.copyfile(bad_midi / "ValueError_Control168.mid", root / "Artist C" / "Broken.mid")
    labels = tmp_path / "genres.csv"
    rows = [(a, Path(n).stem, g) for a, n, _, g in songs if g] + [("Artist C", "Broken", "Rock")]
    labels.write_text("artist,title,genre\n" + "".join(f"{a},{t},{g}\n" for a, t, g in rows))
    return root, labels


def test_clean_midi_genre_and_program_filters(clean_midi, tmp_path):
    root, labels = clean_midi
    out = tmp_path / "data"
    r = prepare([f"lakh:{root}"], out, labels=labels, genres=["rock", "Blues"], programs=[25],
                workers=1, progress=False)
    assert r["found"] == 8
    assert r["filtered_genre"] == 1  # Song Six is Jazz
    assert [s["path"] for s in r["skipped"]] == [str(root / "Artist C" / "Broken.mid")]
    assert "not valid MIDI" in r["skipped"][0]["reason"]
    assert r["filtered_program"] == 2  # Song Two and Song Five have no program 25
    assert r["kept"] == 4
    rows = {row["path"]: row for row in manifest(out)}
    assert set(rows) == {"Artist A/Song One.mid", "Artist A/Song One.1.mid",
                         "Artist B/Song Three.mid", "Artist B/Song Four.mid"}
    assert rows["Artist A/Song One.1.mid"]["genre"] == "Rock"
    assert all("25" in row["programs"].split() for row in rows.values())
    assert json.loads((out / "report.json").read_text())["kept"] == 4
    meta = DataDir(out).meta
    assert meta["genres"] == ["unknown", "Blues", "Rock"]


def test_per_genre_sampling_is_reproducible(clean_midi, tmp_path):
    root, labels = clean_midi
    kept = []
    for run in range(2):
        out = tmp_path / f"data{run}"
        r = prepare([f"lakh:{root}"], out, labels=labels, genres=["Rock", "Blues"], programs=[25],
                    per_genre=1, seed=7, workers=1, progress=False)
        kept.append(sorted(row["path"] for row in manifest(out)))
    # Rock has one song with program 25 (two versions, kept together); Blues two: one is drawn
    assert r["filtered_per_genre"] == 1 and r["kept"] == 3
    assert kept[0] == kept[1]
    assert {"Artist A/Song One.mid", "Artist A/Song One.1.mid"} <= set(kept[0])


def test_lmd_matched_layout_with_tagtraum_labels(tmp_path, pop909):
    root = tmp_path / "lmd_matched"
    tracks = {"TRAAAAA12345678901": "Pop_Rock", "TRBBBBB12345678901": "Country"}
    paths = []
    for k, (tid, _) in enumerate(tracks.items()):
        for v in range(2):  # two MIDI files matched to one MSD track
            md5 = f"{k}{v}" + "0" * 30
            paths.append(put(pop909[2 * k + v], root / "A" / "A" / "A" / tid / f"{md5}.mid",
                             25 if (k, v) == (0, 1) else None))
    cls = tmp_path / "msd_tagtraum_cd2.cls"
    cls.write_text("# tagtraum genre annotations\n" +
                   "".join(f"{t}\t{g}\n" for t, g in tracks.items()))
    out = tmp_path / "data"
    r = prepare([f"lakh:{root}"], out, labels=cls, genres=["Pop_Rock"], workers=1, progress=False)
    assert r["found"] == 4 and r["filtered_genre"] == 2 and r["kept"] == 2
    assert {row["genre"] for row in manifest(out)} == {"Pop_Rock"}
    r = prepare([f"lakh:{root}"], tmp_path / "d2", labels=cls, programs=[25], workers=1,
                progress=False)
    assert r["kept"] == 1 and r["filtered_program"] == 3


def test_adding_files_keeps_splits_and_reuses_the_cache(tmp_path, nottingham):
    folder = tmp_path / "songs"
    for p in nottingham[:40]:
        put(p, folder / p.name)
    put(nottingham[0], folder / "copy-of-first.mid")  # an identical duplicate
    out = tmp_path / "data"
    r1 = prepare([str(folder)], out, workers=2, progress=False)
    before = {row["path"]: row["split"] for row in manifest(out)}
    assert before["copy-of-first.mid"] == before[nottingham[0].name]
    assert len(set(before.values())) > 1  # 41 songs reach more than one split

    for p in nottingham[40:80]:
        put(p, folder / p.name)
    r2 = prepare([str(folder)], out, workers=2, progress=False)
    after = {row["path"]: row["split"] for row in manifest(out)}
    assert len(after) == 81
    assert all(after[p] == s for p, s in before.items())
    # every old file comes from the cache; only the new ones (some of them identical) are tokenized
    assert r1["reused_from_cache"] <= 1 and r2["reused_from_cache"] >= 41
    assert r2["kept"] - r2["reused_from_cache"] <= 40

    # the stored arrays agree with the manifest
    rows = manifest(out)
    for split in ("train", "valid", "test"):
        store = DataDir(out).split(split)
        mine = [r for r in rows if r["split"] == split]
        assert len(store) == len(mine)
        for i, row in enumerate(mine):
            assert len(store.ids(i)) == int(row["tokens"])
            assert len(store.bars(i)) == int(row["bars"])
            assert store.bars(i)[0] == 0 and np.all(np.diff(store.bars(i)) > 0)
            rhythm, poly = store.attributes(i)
            assert rhythm.max() < 8 and poly.max() < 8


def test_corrupt_and_empty_files_are_skipped_and_named(tmp_path, nottingham, bad_midi):
    folder = tmp_path / "mixed"
    for p in nottingham[:3]:
        put(p, folder / p.name)
    for p in bad_midi.glob("*.mid"):
        put(p, folder / p.name)
    r = prepare([str(folder)], tmp_path / "data", workers=1, progress=False)
    reasons = {Path(s["path"]).name: s["reason"] for s in r["skipped"]}
    assert reasons == {"ValueError_Control168.mid": reasons["ValueError_Control168.mid"],
                       "empty.mid": "no notes"}
    assert "not valid MIDI" in reasons["ValueError_Control168.mid"]
    assert r["kept"] == 3


def test_music21_corpus_source(tmp_path):
    out = tmp_path / "data"
    r = prepare(["music21:bach"], out, max_files=3, workers=1, progress=False)
    assert r["kept"] == 3 and r["filtered_max_files"] > 400
    assert {row["genre"] for row in manifest(out)} == {"bach"}
    assert all(row["path"].startswith("bach/") for row in manifest(out))


def test_a_data_dir_prepared_with_bpe_is_refused_in_one_line(tiny_data, tmp_path, capsys):
    """--bpe-vocab is gone (generation needs base tokens); a folder an older mtvae prepared
    with it is refused by every command that reads it, in one line."""
    old = tmp_path / "bpe"
    shutil.copytree(tiny_data, old, ignore=shutil.ignore_patterns(".lock"))
    meta = json.loads((old / "meta.json").read_text())
    (old / "meta.json").write_text(json.dumps(meta | {"bpe": True}))
    code, err = run_cli(capsys, "train", str(old), "--out", str(tmp_path / "run"))
    assert code == 2 and len(err) == 1 and "--bpe-vocab" in err[0], err
    assert not (tmp_path / "run").exists()
    code, err = run_cli(capsys, "prepare", "SONGS", "--out", str(tmp_path / "p"), "--bpe-vocab", "600")
    assert code == 2 and len(err) == 1 and "--bpe-vocab" in err[0], err


def run_cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return code, [line for line in err if "%|" not in line]  # drop progress-bar frames


def test_bad_input_gives_one_line_and_exit_code_2(tmp_path, capsys, nottingham, clean_midi):
    out = str(tmp_path / "out")
    code, err = run_cli(capsys, "prepare", str(tmp_path / "missing"), "--out", out)
    assert code == 2 and len(err) == 1 and "source not found" in err[0]

    (tmp_path / "empty").mkdir()
    code, err = run_cli(capsys, "prepare", str(tmp_path / "empty"), "--out", out)
    assert code == 2 and len(err) == 1 and "no .mid/.midi files" in err[0]

    code, err = run_cli(capsys, "prepare", "music21:nosuch", "--out", out)
    assert code == 2 and len(err) == 1 and "valid names:" in err[0] and "bach" in err[0]

    root, labels = clean_midi
    bad = tmp_path / "bad.csv"
    bad.write_text("artist,title,genre\nArtist A,Song One,Rock\nArtist B;Song Three\n")
    code, err = run_cli(capsys, "prepare", f"lakh:{root}", "--labels", str(bad), "--out", out)
    assert code == 2 and len(err) == 1 and "line 3" in err[0]

    code, err = run_cli(capsys, "prepare", f"lakh:{root}", "--labels", str(labels),
                        "--genre", "Polka", "--out", out)
    assert code == 2 and len(err) == 1
    assert "genres found: Blues, Jazz, Rock" in err[0]
    assert not Path(out, "meta.json").exists()


def test_a_crash_leaves_no_trusted_data_dir(tmp_path, nottingham, monkeypatch):
    folder = tmp_path / "songs"
    for p in nottingham[:6]:
        put(p, folder / p.name)
    real_save = prepare_module._save_split

    def crash_on_valid(folder, *args):
        if folder.name == "valid":
            raise KeyboardInterrupt  # as if killed while writing
        real_save(folder, *args)

    monkeypatch.setattr(prepare_module, "_save_split", crash_on_valid)
    fresh = tmp_path / "fresh"
    with pytest.raises(KeyboardInterrupt):
        prepare([str(folder)], fresh, workers=1, progress=False)
    assert not fresh.exists()  # a new DATA_DIR that did not come about leaves nothing
    half = tmp_path / "half"  # a folder with no meta.json is never read as data
    (half / "train").mkdir(parents=True)
    with pytest.raises(UserError, match="not a prepared DATA_DIR"):
        DataDir(half).split("train")

    # an earlier complete DATA_DIR survives a crashed re-run untouched
    monkeypatch.setattr(prepare_module, "_save_split", real_save)
    good = tmp_path / "good"
    prepare([str(folder)], good, workers=1, progress=False)
    before = (good / "manifest.csv").read_text()
    monkeypatch.setattr(prepare_module, "_save_split", crash_on_valid)
    with pytest.raises(KeyboardInterrupt):
        prepare([str(folder)], good, workers=1, progress=False)
    assert (good / "manifest.csv").read_text() == before
    assert len(DataDir(good).split("train")) > 0
    assert not list(good.glob(".staging-*"))


def test_a_genre_named_source_gives_its_songs_that_genre(nottingham, tmp_path):
    """Corpora mixed in one DATA_DIR keep apart: GENRE=SOURCE labels every song it lists."""
    a, b = tmp_path / "reels", tmp_path / "jigs"
    for k in range(3):
        put(nottingham[k], a / f"r{k}.mid")
        put(nottingham[20 + k], b / f"j{k}.mid")
    out = tmp_path / "data"
    r = prepare([f"reel={a}", f"jig={b}"], out, genres=["jig"], workers=1, progress=False)
    assert r["kept"] == 3 and r["filtered_genre"] == 3
    assert {row["genre"] for row in manifest(out)} == {"jig"}
    assert DataDir(out).meta["genres"] == ["unknown", "jig"]
    with pytest.raises(UserError, match="source not found"):
        prepare([f"reel={tmp_path / 'nowhere'}"], tmp_path / "x", workers=1, progress=False)


def test_a_music21_work_that_never_finishes_converting_is_skipped(monkeypatch):
    """Aird's Airs, book 1, tune 102: music21's MIDI writer does not finish it (minutes and
    counting). prepare gives each conversion a time limit and skips it with the reason."""
    from mtvae.data import pipeline
    from mtvae.data.sources import list_source

    monkeypatch.setattr(pipeline, "CONVERT_SECONDS", 2)
    item = next(i for i in list_source("music21:airdsAirs") if i.rel.endswith("book1.abc#102"))
    out = pipeline._inspect(item)
    assert out["error"].startswith("cannot convert: TimeoutError")
    assert not Path(item.path).exists() and not list(Path(item.path).parent.glob("*.tmp"))
