"""Every bad argument of every subcommand exits 2 with one line on stderr that names the
option (and nothing is written); a few good edge values are accepted."""

import os

import pytest

from mtvae.cli import main


@pytest.fixture(scope="module")
def paths(tiny_run, tiny_data, nottingham, bad_midi, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("args")
    a_file = tmp / "a_file"
    a_file.write_text("not a folder")
    zero = tmp / "zero.mid"
    zero.write_bytes(b"")
    return {"RUN": str(tiny_run), "DATA": str(tiny_data), "A": str(nottingham[0]),
            "B": str(nottingham[1]), "BAD": str(bad_midi / "ValueError_Control168.mid"),
            "NONOTES": str(bad_midi / "empty.mid"), "ZERO": str(zero),
            "SONGS": str(nottingham[0].parent), "FILE": str(a_file), "TMP": str(tmp),
            "DIR": str(tmp)}


def expand(argv, paths):
    out = []
    for a in argv:
        head, sep, rest = a.partition("/")
        out.append(paths[head] + sep + rest if head in paths else a)
    return out


# (argv, text the one error line must contain)
CASES = [
    # prepare
    (["prepare", "SONGS", "--out", "TMP/p", "--workers", "0"], "--workers"),
    (["prepare", "SONGS", "--out", "TMP/p", "--workers", "-1"], "--workers"),
    (["prepare", "SONGS", "--out", "TMP/p", "--workers", "two"], "--workers"),
    (["prepare", "SONGS", "--out", "TMP/p", "--max-files", "0"], "--max-files"),
    (["prepare", "SONGS", "--out", "TMP/p", "--per-genre", "0"], "--per-genre"),
    (["prepare", "SONGS", "--out", "TMP/p", "--program", "128"], "--program"),
    (["prepare", "SONGS", "--out", "TMP/p", "--program", "-1"], "--program"),
    (["prepare", "SONGS", "--out", "TMP/p", "--max-bars", "0"], "--max-bars"),
    (["prepare", "SONGS", "--out", "TMP/p", "--seed", "-1"], "--seed"),
    (["prepare", "SONGS", "--out", "FILE"], "--out"),
    (["prepare", "SONGS", "--out", "FILE/sub"], "--out"),
    (["prepare", "TMP/none", "--out", "TMP/p"], "source not found"),
    (["prepare", "SONGS"], "--out"),
    (["prepare", "music21:nosuchcorpus", "--out", "TMP/p"], "unknown music21 corpus"),
    (["prepare", "SONGS", "--out", "TMP/p", "--meter", "5/4"], "--meter"),
    # train
    (["train", "DATA", "--out", "TMP/t", "--batch-size", "0"], "--batch-size"),
    (["train", "DATA", "--out", "TMP/t", "--segments", "0"], "--segments"),
    (["train", "DATA", "--out", "TMP/t", "--val-every", "0"], "--val-every"),
    (["train", "DATA", "--out", "TMP/t", "--lr", "-1"], "--lr"),
    (["train", "DATA", "--out", "TMP/t", "--lr", "nan"], "--lr"),
    (["train", "DATA", "--out", "TMP/t", "--max-steps", "0"], "--max-steps"),
    (["train", "DATA", "--out", "TMP/t", "--max-steps", "-5"], "--max-steps"),
    (["train", "DATA", "--out", "TMP/t", "--patience", "0"], "--patience"),
    (["train", "DATA", "--out", "TMP/t", "--max-minutes", "0"], "--max-minutes"),
    (["train", "DATA", "--out", "TMP/t", "--max-minutes", "inf"], "--max-minutes"),
    (["train", "DATA", "--out", "TMP/t", "--seed", "-1"], "--seed"),
    (["train", "DATA", "--out", "TMP/t", "--device", "tpu"], "--device"),
    (["train", "DATA", "--out", "TMP/t", "--preset", "huge"], "--preset"),
    (["train", "DATA", "--out", "FILE"], "--out"),
    (["train", "DATA", "--out", "TMP/t", "--resume"], "--resume"),
    (["train", "TMP/nodata", "--out", "TMP/t"], "DATA_DIR not found"),
    (["train", "DATA", "--out", "TMP/t", "--beta-max", "nan"], "--beta-max"),
    (["train", "DATA", "--out", "TMP/t", "--free-bits", "-1"], "--free-bits"),
    (["train", "DATA", "--out", "TMP/t", "--d-latent", "0"], "--d-latent"),
    # sample
    (["sample", "RUN", "--coherence", "1.5"], "--coherence"),
    (["sample", "RUN", "--guidance", "-1"], "--guidance"),
    (["reconstruct", "RUN", "A", "--guidance", "nan"], "--guidance"),
    (["sample", "RUN", "--temperature", "nan"], "--temperature"),
    (["sample", "RUN", "--temperature", "inf"], "--temperature"),
    (["sample", "RUN", "--temperature", "-1"], "--temperature"),
    (["sample", "RUN", "--top-p", "-1"], "--top-p"),
    (["sample", "RUN", "--top-p", "0"], "--top-p"),
    (["sample", "RUN", "--top-p", "2"], "--top-p"),
    (["sample", "RUN", "--top-k", "-1"], "--top-k"),
    (["sample", "RUN", "--top-k", "0"], "--top-k"),
    (["sample", "RUN", "--bars", "0"], "--bars"),
    (["sample", "RUN", "--bars", "100000"], "--bars"),
    (["sample", "RUN", "--n", "0"], "--n"),
    (["sample", "RUN", "--meter", "7/3"], "--meter"),
    (["continue", "RUN", "A", "--meter", "x"], "--meter"),
    (["sample", "RUN", "--n", "100000"], "--n"),
    (["sample", "RUN", "--rhythm", "8"], "--rhythm"),
    (["sample", "RUN", "--rhythm", "-1"], "--rhythm"),
    (["sample", "RUN", "--polyphony", "9"], "--polyphony"),
    (["sample", "RUN", "--genre", "Polka"], "--genre"),
    (["sample", "RUN", "--seed", "-1"], "--seed"),
    (["sample", "RUN", "--out", "FILE"], "--out"),
    (["sample", "RUN", "--device", "cuda:7"], "--device"),
    (["sample", "RUN", "--device", "gpu"], "--device"),
    (["sample", "RUN", "--bars", "x"], "--bars"),
    (["sample", "TMP/norun"], "RUN_DIR not found"),
    (["sample", "DIR"], "no trained weights"),
    # continue
    (["continue", "RUN", "A", "--bars", "0"], "--bars"),
    (["continue", "RUN", "A", "--bars", "-1"], "--bars"),
    (["continue", "RUN", "A", "--max-bars", "0"], "--max-bars"),
    (["continue", "RUN", "A", "--max-bars", "2"], "--max-bars"),
    (["continue", "RUN", "TMP/missing.mid"], "file not found"),
    (["continue", "RUN", "DIR"], "not a regular file"),
    (["continue", "RUN", "BAD"], "not valid MIDI"),
    (["continue", "RUN", "ZERO"], "empty file"),
    (["continue", "RUN", "NONOTES"], "no notes"),
    (["reconstruct", "RUN", "NONOTES"], "no notes"),
    (["transfer", "RUN", "NONOTES"], "no notes"),
    # interpolate
    (["interpolate", "RUN", "A", "B", "--bars", "0"], "--bars"),
    (["interpolate", "RUN", "A", "B", "--steps", "1"], "--steps"),
    (["interpolate", "RUN", "A", "B", "--steps", "100000"], "--steps"),
    (["interpolate", "RUN", "A", "B", "--bars", "400"], "--bars"),
    # reconstruct
    (["reconstruct", "RUN", "A", "--bars", "0"], "--bars"),
    (["reconstruct", "RUN", "A", "--bars", "-3"], "--bars"),
    (["reconstruct", "RUN", "A", "--bars", "100000"], "--bars"),
    (["reconstruct", "RUN", "A", "--temperature", "-0.5"], "--temperature"),
    # transfer
    (["transfer", "RUN", "A", "--bars", "0"], "--bars"),
    (["transfer", "RUN", "A", "--rhythm-shift", "100"], "--rhythm-shift"),
    (["transfer", "RUN", "A", "--polyphony-shift", "-9"], "--polyphony-shift"),
    (["transfer", "RUN", "A", "--genre", "Polka"], "--genre"),
    (["transfer", "RUN", "A", "--bars", "-3"], "--bars"),
    (["transfer", "RUN", "A", "--bars", "4-2"], "--bars"),
    (["transfer", "RUN", "A", "--bars", "2-999"], "--bars"),
    # infill
    (["infill", "RUN", "A"], "--bars"),
    (["infill", "RUN", "A", "--bars", "2-3,3-4"], "overlap"),
    (["infill", "RUN", "A", "--bars", "3-2"], "--bars"),
    (["infill", "RUN", "A", "--bars", "1-9999"], "--bars"),
    (["infill", "RUN", "A", "--bars", "2..3"], "--bars"),
    (["infill", "RUN", "A", "--bars", "2-3", "--like", "TMP/missing.mid"], "file not found"),
    (["infill", "RUN", "A", "--bars", "2-3", "--like", "B", "--keep-latents"], "--like"),
    (["infill", "RUN", "A", "--bars", "2-3", "--rhythm", "8"], "--rhythm"),
    (["infill", "RUN", "A", "--bars", "2-3", "--polyphony", "-1"], "--polyphony"),
    (["infill", "RUN", "A", "--bars", "2-3", "--temperature", "nan"], "--temperature"),
    (["infill", "RUN", "A", "--bars", "2-3", "--genre", "Polka"], "--genre"),
    (["infill", "RUN", "NONOTES", "--bars", "2-3"], "no notes"),
    # render
    (["render", "A", "--png", "DIR"], "--png"),
    (["render", "A", "--wav", "FILE/x.wav"], "--wav"),
    (["render", "TMP/missing.mid"], "file not found"),
    (["render", "BAD"], "not valid MIDI"),
    (["render", "A", "--max-bars", "-1"], "--max-bars"),
    # evaluate
    (["evaluate", "RUN", "DATA", "--samples", "0"], "--samples"),
    (["evaluate", "RUN", "DATA", "--coherence", "-0.5"], "--coherence"),
    (["evaluate", "RUN", "DATA", "--guidance", "11"], "--guidance"),
    (["evaluate", "RUN", "DATA", "--max-windows", "-1"], "--max-windows"),
    (["evaluate", "RUN", "DATA", "--bars", "0"], "--bars"),
    (["evaluate", "RUN", "DATA", "--top-k", "0"], "--top-k"),
    (["evaluate", "RUN", "DATA", "--split", "dev"], "--split"),
    (["evaluate", "RUN", "DATA", "--json", "DIR"], "--json"),
    (["evaluate", "RUN", "DATA", "--compare", "nofolder"], "--compare"),
    (["evaluate", "RUN", "TMP/nodata"], "DATA_DIR not found"),
    # prior
    (["prior", "RUN", "DATA", "--steps", "0"], "--steps"),
    (["prior", "RUN", "DATA", "--max-songs", "0"], "--max-songs"),
    (["prior", "RUN", "DATA", "--seed", "-1"], "--seed"),
    (["prior", "RUN", "TMP/nodata"], "DATA_DIR not found"),
    (["prior", "TMP/norun", "DATA"], "no trained weights"),
    (["sample", "RUN", "--prior", "magic"], "--prior"),
    (["sample", "RUN", "--coherence", "0.5"], "--prior normal"),  # the run has a learnt prior
    # demo
    (["demo", "--minutes", "0", "--out", "TMP/d"], "--minutes"),
    (["demo", "--minutes", "-1", "--out", "TMP/d"], "--minutes"),
    (["demo", "--max-files", "0", "--out", "TMP/d"], "--max-files"),
    (["demo", "--out", "FILE"], "--out"),
    # the command line itself
    (["nosuchcommand"], "invalid choice"),
    (["sample"], "RUN_DIR"),
]


def test_every_bad_argument_exits_2_with_one_line(paths, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # render writes beside the working folder by default
    failures = []
    for argv, needle in CASES:
        args = expand(argv, paths)
        if args[0] in ("sample", "continue", "interpolate", "reconstruct", "transfer", "infill") \
                and "--out" not in args:
            args += ["--out", paths["TMP"] + "/gen", "--quiet", "--no-audio"]
        code = main(args)
        err = capsys.readouterr().err.strip().splitlines()
        err = [ln for ln in err if "%|" not in ln]  # progress bars are not messages
        ok = code == 2 and len(err) == 1 and needle in err[0] and "Traceback" not in err[0]
        if not ok:
            failures.append((argv, code, err))
    assert not failures, "\n".join(map(str, failures))
    assert len(CASES) >= 90
    # nothing was written by a refused call
    assert not os.path.exists(paths["TMP"] + "/p") and not os.path.exists(paths["TMP"] + "/t")
    assert not os.path.exists(paths["TMP"] + "/d")


def test_an_internal_error_is_one_line_unless_debugging(paths, capsys, monkeypatch):
    from mtvae import api

    def broken(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(api.MusicVAE, "sample", broken)
    argv = ["sample", paths["RUN"], "--out", paths["TMP"] + "/gen", "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: ZeroDivisionError" in err[0]
    monkeypatch.setenv("MTVAE_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(argv)


def test_edge_values_that_are_fine(paths, tmp_path, capsys):
    # a missing folder for --png/--wav is created; --temperature 0 is greedy; --top-p 1 is a no-op
    png, wav = tmp_path / "new" / "deeper" / "x.png", tmp_path / "new" / "x.wav"
    assert main(["render", paths["A"], "--png", str(png), "--wav", str(wav)]) == 0
    assert png.stat().st_size > 0 and wav.stat().st_size > 44
    assert main(["sample", paths["RUN"], "--bars", "1", "--n", "1", "--temperature", "0",
                 "--top-p", "1", "--top-k", "1000000", "--seed", "0", "--quiet", "--no-audio",
                 "--out", str(tmp_path / "s")]) == 0
