"""Seeded fuzzing: 82 hostile MIDI files made from ../shared/data (tests/midifuzz.py)
go through ``prepare`` and through every command that reads MIDI (render, reconstruct,
continue, transfer, interpolate, infill). Every call must end with exit code 0 or 2 (a clean one-line
refusal) — never a traceback, an internal error (exit 1), a hang or more than 2 GB of memory.

The calls run in a child process (so its peak memory is measured on its own); each call is
timed there. The corpus is split in two halves, one child each, so that the test's two parts
run side by side under ``pytest -n 2``; the first also prepares the whole corpus. Every file
is drawn as a piano roll, every tenth also rendered to audio (FluidSynth when it is there:
it takes seconds per hostile file, bounded by render's own time limit).
``python tests/test_fuzz.py OUT N RUN_DIR GOOD PART PARTS`` runs a child by hand.
"""

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

N_FILES = 82  # every one of the 41 families of tests/midifuzz.py twice (two variants each)
PARTS = 2
SEED = 9
MAX_CALL_SECONDS = 30
MAX_PEAK_MB = 2048


def child(out: Path, n: int, run_dir: str, good: str, part: int = 0, parts: int = 1) -> dict:
    import contextlib
    import io

    sys.path.insert(0, str(Path(__file__).parent))
    import midifuzz

    from mtvae.cli import main

    corpus = midifuzz.build_corpus(out / "corpus", n, seed=SEED)
    assert max(f.stat().st_size for f in corpus) < 2**20  # every input is under 1 MB
    files = corpus[part::parts]
    calls = []

    def call(argv):
        err = io.StringIO()
        t = time.time()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        calls.append({"argv": argv, "code": code, "seconds": round(time.time() - t, 2),
                      "stderr": err.getvalue()[-2000:]})
        return code

    if part == 0:
        call(["prepare", str(out / "corpus"), "--out", str(out / "data"), "--workers", "1",
              "--quiet"])

    # the generating commands through the API the CLI wraps (one model load for all files)
    from mtvae import MusicVAE, Sampling
    from mtvae.errors import UserError

    m = MusicVAE.load(run_dir)
    # what is under test is reading hostile input, not writing long bars: each new bar is
    # closed once it holds a note and 32 tokens (a barely trained model rambles)
    short = Sampling(seed=0, max_bar_tokens=32)

    def api(name, fn, *args, **kw):
        t = time.time()
        try:
            fn(*args, **kw)
            code, text = 0, ""
        except UserError as e:
            code, text = 2, f"error: {e}"
        except Exception as e:  # noqa: BLE001 - what the test is looking for
            import traceback

            code, text = 1, "Traceback " + traceback.format_exc()
        calls.append({"argv": [name, str(args[0])], "code": code,
                      "seconds": round(time.time() - t, 2), "stderr": text[-2000:]})

    for i, f in enumerate(files):
        o = str(out / "o")
        wav = ["--wav", f"{o}/r.wav"] if i % 10 == 0 else []  # audio: every tenth file
        call(["render", str(f), "--png", f"{o}/r.png", *wav])
        api("continue", m.continue_, f, bars=1, sampling=short)
        api("transfer", m.transfer, f, bars=2, rhythm_shift=1, sampling=short)
        api("interpolate", m.interpolate, f, good, bars=1, steps=2, sampling=short)
        api("infill", m.infill, f, "1-1", sampling=short)
        if i % 10 == 0:  # and the CLI end to end, files written (transfer above is the
            # same decoding as reconstruct, with shifted attributes)
            call(["reconstruct", run_dir, str(f), "--bars", "2", "--out", o, "--no-audio",
                  "--quiet", "--seed", "0"])
    report = json.loads((out / "data" / "report.json").read_text()) \
        if (out / "data" / "report.json").is_file() else {}
    return {"files": len(files), "calls": calls, "prepare_report": {
        k: report.get(k) for k in ("found", "kept", "length_filter", "empty_bars")}}


@pytest.mark.slow
@pytest.mark.parametrize("part", range(PARTS))
def test_hostile_midi_never_crashes_hangs_or_exhausts_memory(tiny_run, nottingham, tmp_path,
                                                             part):
    env = dict(os.environ, OMP_NUM_THREADS="1", MTVAE_CACHE=str(tmp_path / "cache"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.time()
    res = subprocess.run([sys.executable, __file__, str(tmp_path), str(N_FILES), str(tiny_run),
                          str(nottingham[0]), str(part), str(PARTS)], env=env,
                         capture_output=True, text=True, timeout=540)
    wall = time.time() - t
    assert res.returncode == 0, res.stderr[-3000:]
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out = json.loads((tmp_path / "fuzz.json").read_text())
    calls = out["calls"]
    bad = [c for c in calls if c["code"] not in (0, 2) or "Traceback" in c["stderr"]]
    assert not bad, json.dumps(bad[:5], indent=1)
    refused = [c for c in calls if c["code"] == 2]
    assert all(len([ln for ln in c["stderr"].splitlines() if "error" in ln]) == 1 for c in refused)
    slow = [c for c in calls if c["seconds"] > MAX_CALL_SECONDS]
    assert not slow, slow[:3]
    # peak memory of the child (a lower bound from earlier children cannot hide it: max RSS)
    assert peak_mb < MAX_PEAK_MB or before / 1024 >= MAX_PEAK_MB, peak_mb
    # the hostile corpus really is hostile, and prepare filtered and trimmed it
    assert len(refused) > len(calls) // 4 and any(c["code"] == 0 for c in calls[1:])
    if part == 0:
        rep = out["prepare_report"]
        assert rep["kept"] and rep["kept"] < rep["found"]
        assert rep["empty_bars"]["songs_trimmed"] > 0
    print(f"fuzz: {out['files']} files, {len(calls)} calls, {len(refused)} refused, 0 crashes, "
          f"slowest {max(c['seconds'] for c in calls):.1f} s, peak {peak_mb:.0f} MB, {wall:.0f} s")


if __name__ == "__main__":
    out_dir = Path(sys.argv[1])
    result = child(out_dir, int(sys.argv[2]), sys.argv[3], sys.argv[4], *map(int, sys.argv[5:7]))
    (out_dir / "fuzz.json").write_text(json.dumps(result, indent=1))
