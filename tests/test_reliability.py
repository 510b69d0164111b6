"""Issue #9: runs and data survive kill -9, a full disk, Ctrl-C, two writers and bad resumes.

Most tests run the real command line in a subprocess (``python -m mtvae``) and fault it from
outside: SIGKILL at chosen moments, SIGINT to its process group, ``RLIMIT_FSIZE`` (a file may
not grow past N bytes: every write beyond it fails with EFBIG, as a full disk fails with
ENOSPC), a lock held by this process. Every subprocess has a timeout, so nothing can hang.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mtvae import checkpoint as ck
from mtvae import run as R
from mtvae.cli import main

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None

needs_fsize = pytest.mark.skipif(resource is None or not hasattr(resource, "RLIMIT_FSIZE"),
                                 reason="RLIMIT_FSIZE is not available on this system")

STEPS = 30
TRAIN = ["--preset", "tiny", "--max-steps", str(STEPS), "--val-every", "3", "--batch-size", "4",
         "--prior-steps", "0",  # the learnt prior after training: tests/test_prior.py
         "--segments", "2", "--device", "cpu", "--quiet"]
TIMEOUT = 240  # seconds for any one subprocess: generous on a busy machine, but finite


# ----------------------------------------------------------------------------- helpers


def env(**extra) -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    e.pop("MTVAE_DEBUG", None)  # the tests check what a user sees: no traceback
    return e


def mtvae(*args) -> list[str]:
    return [sys.executable, "-m", "mtvae", *map(str, args)]


def run(*args, limit: int | None = None, timeout: int = TIMEOUT, **extra_env):
    """Run the CLI to its end; with ``limit``, no file it writes may grow past ``limit`` bytes."""
    return subprocess.run(mtvae(*args), env=env(**extra_env), capture_output=True, text=True,
                          timeout=timeout, preexec_fn=fsize_limit(limit) if limit else None)


def run_together(*commands: list, limit: int | None = None) -> list:
    """Run several CLI commands at the same time (each a list of arguments); wait for all."""
    procs = [subprocess.Popen(mtvae(*c), env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=fsize_limit(limit) if limit else None)
             for c in commands]
    results = []
    for c, p in zip(commands, procs):
        try:
            out, err = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        results.append(subprocess.CompletedProcess(c, p.returncode, out, err))
    return results


def start(*args, **popen) -> subprocess.Popen:
    return subprocess.Popen(mtvae(*args), env=popen.pop("env", None) or env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def fsize_limit(n: int):
    def pre():
        # without SIG_IGN the kernel kills the process at the limit; ignored, write() fails
        # with EFBIG, which is what a program sees of a full disk (ENOSPC)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
    return pre


def lines(stderr: str) -> list[str]:
    return [x for x in stderr.splitlines() if x.strip() and "%|" not in x]


def wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    """Poll ``cond`` every 2 ms while ``proc`` runs."""
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended (code {proc.returncode}) before {what}: "
                        f"{(err or '')[-2000:]}")
        if time.monotonic() > end:
            proc.kill()
            proc.communicate()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


def kill9(proc: subprocess.Popen) -> str:
    os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    return err


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()
                  if p.name.startswith(".") and p.name.endswith((".tmp", ck.PENDING)))


def journal(folder: Path) -> dict | None:
    try:
        return json.loads((folder / ck.JOURNAL).read_text())
    except (FileNotFoundError, ValueError):
        return None


def logged(run_dir: Path, step: int) -> bool:
    """Whether metrics.csv has the train row of ``step``."""
    try:
        text = (run_dir / "metrics.csv").read_text()
    except FileNotFoundError:
        return False
    return f"\n{step},train," in text


def journal_step(folder: Path) -> int:
    j = journal(folder)
    return -1 if j is None else int(j["step"])


def pending_steps(folder: Path) -> list[int]:
    """Steps of the pending files of a commit in progress (``.NAME.STEP.pending``)."""
    return [int(p.name.rsplit(".", 2)[1]) for p in folder.glob(f".*{ck.PENDING}")]


def consistent_step(run_dir: Path, validated: bool = True) -> int:
    """The one step a run folder holds: no temporary files, the journal done, and the training
    state, the last weights and the journal at the same step; the best weights of an earlier
    step (none in a run stopped before its first validation: ``validated=False``)."""
    assert leftovers(run_dir) == []
    j = journal(run_dir)
    assert j is not None and "pending" not in j, j
    state = torch.load(run_dir / R.STATE, map_location="cpu", weights_only=True)["step"]
    with safe_open(str(run_dir / R.LAST), "pt") as f:
        last = int(f.metadata()["step"])
    if not validated:
        assert not (run_dir / R.BEST).exists() and state == last == j["step"], (state, last, j)
        return state
    with safe_open(str(run_dir / R.BEST), "pt") as f:
        best = int(f.metadata()["step"])
    assert state == last == j["step"] and best <= state, (state, last, j, best)
    return state


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def metrics_rows(run_dir: Path) -> list[dict]:
    import csv

    with open(run_dir / "metrics.csv") as f:  # timing columns differ from run to run
        return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "elapsed_s")}
                for r in csv.DictReader(f)]


def link_songs(folder: Path, songs: list[Path]) -> Path:
    folder.mkdir()
    for p in songs:
        (folder / p.name).symlink_to(p)
    return folder


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def baseline(tiny_data, tmp_path_factory) -> Path:
    """An uninterrupted run with the settings every test here uses."""
    out = tmp_path_factory.mktemp("baseline") / "run"
    r = run("train", tiny_data, "--out", out, *TRAIN)
    assert r.returncode == 0, r.stderr[-3000:]
    assert consistent_step(out) == STEPS
    return out


@pytest.fixture(scope="module")
def folk(tmp_path_factory, nottingham) -> Path:
    """24 folk tunes in a folder (symlinks)."""
    return link_songs(tmp_path_factory.mktemp("folk") / "songs", nottingham[:24])


@pytest.fixture(scope="module")
def folk_data(folk, tmp_path_factory) -> Path:
    """A good DATA_DIR of the folk tunes."""
    out = tmp_path_factory.mktemp("folk-data") / "data"
    r = run("prepare", folk, "--out", out, "--workers", "2", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture
def run_copy(baseline, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(baseline, dst)
    return dst


# ----------------------------------------------------------------------------- 1. kill -9


@pytest.mark.slow
def test_kill_9_at_any_moment_then_resume_equals_an_uninterrupted_run(tiny_data, baseline,
                                                                      tmp_path):
    rng = random.Random(9)
    run_dir = tmp_path / "run"
    kills: list[str] = []

    def after_kill(label: str) -> None:
        """What recovery makes of the folder as the kill left it: one consistent step."""
        kills.append(label)
        copy = tmp_path / f"after-kill-{len(kills)}"
        shutil.copytree(run_dir, copy)
        step = ck.recover(copy)
        if step is None:
            assert not (copy / R.STATE).exists() and leftovers(copy) == []
        else:
            assert consistent_step(copy) == step

    # a) very early: the run has written its config.json but no checkpoint yet
    p = start("train", tiny_data, "--out", run_dir, *TRAIN)
    wait_for(lambda: (run_dir / R.CONFIG).exists(), p, "config.json")
    kill9(p)
    assert not (run_dir / R.STATE).exists(), "killed too late: a checkpoint exists"
    after_kill("before the first checkpoint")

    # such a run starts again with --resume (on a copy, killed after its first checkpoint) ...
    side = tmp_path / "side"
    shutil.copytree(run_dir, side)
    p = start("train", tiny_data, "--out", side, *TRAIN, "--resume")
    wait_for(lambda: journal_step(side) >= 3, p, "the first checkpoint of the resumed copy")
    err = kill9(p)
    assert "has no checkpoint yet" in err
    kills.append("side copy after its first checkpoint")
    ck.recover(side)
    assert consistent_step(side) >= 3

    # b) ... and with a plain re-run, which the main line goes on with; killed a random
    # moment after a random checkpoint
    p = start("train", tiny_data, "--out", run_dir, *TRAIN)
    target = rng.choice([6, 9])
    wait_for(lambda: journal_step(run_dir) >= target, p, f"the step-{target} checkpoint")
    delay = rng.uniform(0.0, 0.4)
    time.sleep(delay)
    kill9(p)
    after_kill(f"{delay:.2f} s after the step-{target} checkpoint")

    # c) inside a commit: as soon as the first pending file of a new checkpoint appears (on a
    # very fast disk the commit may be over before the kill: then try again, twice at most)
    for _ in range(3):
        base = max(journal_step(run_dir), *pending_steps(run_dir), 0)  # not a stale one
        p = start("train", tiny_data, "--out", run_dir, *TRAIN, "--resume")
        wait_for(lambda: any(s > base for s in pending_steps(run_dir)), p, "a commit")
        kill9(p)
        inside = bool(leftovers(run_dir))  # pending files left: the kill landed inside it
        after_kill("inside a commit" if inside else "just after a commit")
        if inside:
            break
    assert inside, "every kill meant to land inside a commit came after it"

    # d) a random moment after the next checkpoint
    base = max(journal_step(run_dir), *pending_steps(run_dir), 0)
    p = start("train", tiny_data, "--out", run_dir, *TRAIN, "--resume")
    wait_for(lambda: journal_step(run_dir) > base, p, "a checkpoint after the last one")
    delay = rng.uniform(0.0, 0.6)
    time.sleep(delay)
    kill9(p)
    after_kill(f"{delay:.2f} s after a later checkpoint")

    # the last resume runs to the end
    p = start("train", tiny_data, "--out", run_dir, *TRAIN, "--resume")
    _, err = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 0, err[-3000:]

    print(f"\n{len(kills)} kills: {kills}")
    assert len(kills) >= 5
    assert consistent_step(run_dir) == STEPS
    assert_same_weights(baseline / R.LAST, run_dir / R.LAST)
    assert_same_weights(baseline / R.BEST, run_dir / R.BEST)
    assert metrics_rows(baseline) == metrics_rows(run_dir)
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == STEPS


def test_ctrl_c_or_sigterm_checkpoints_the_step_then_resume_equals_an_uninterrupted_run(
        tiny_data, baseline, tmp_path):
    run_dir = tmp_path / "run"
    stops = []
    # signalled as soon as step 1's (then step 10's) metrics are written: between checkpoints
    # (every 3 steps), the first before any
    for sig, after in ((signal.SIGINT, 1), (signal.SIGTERM, 10)):
        # SIGINT as a terminal delivers it, not ignored (see start_prepare)
        old = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            p = start("train", tiny_data, "--out", run_dir, *TRAIN,
                      *(["--resume"] if stops else []))
        finally:
            signal.signal(signal.SIGINT, old)
        wait_for(lambda: logged(run_dir, after), p, f"step {after}'s metrics")
        p.send_signal(sig)
        out, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 128 + sig, err[-3000:]
        # the step it was in, finished and checkpointed
        step = consistent_step(run_dir, validated=journal_step(run_dir) >= 3)
        assert after <= step < STEPS
        assert lines(err) == [f"stopped at step {step} by {sig.name}; checkpointed: go on with "
                              f"'mtvae train {tiny_data} --out {run_dir} --resume'"]
        assert f"step {step}: {sig.name}, checkpointed" in out
        stops.append(step)
    print(f"\nstopped at steps {stops}")
    assert any(s % 3 for s in stops), "every signal came at a validation step"
    r = run("train", tiny_data, "--out", run_dir, *TRAIN, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert consistent_step(run_dir) == STEPS
    assert_same_weights(baseline / R.LAST, run_dir / R.LAST)
    assert_same_weights(baseline / R.BEST, run_dir / R.BEST)
    assert metrics_rows(baseline) == metrics_rows(run_dir)


# ----------------------------------------------------------------------------- 2. commit


def writers(step: int, names=(R.BEST, R.LAST, R.STATE)) -> dict:
    return {n: (lambda tmp, n=n: Path(tmp).write_text(f"{n} at step {step}\n")) for n in names}


@pytest.mark.parametrize("renamed", [0, 1, 2])
def test_a_commit_interrupted_between_its_renames_is_finished_by_recover(tmp_path, monkeypatch,
                                                                         renamed):
    ck.commit(tmp_path, writers(1), 1)
    real_replace, done = os.replace, []

    def replace(src, dst):
        if str(src).endswith(ck.PENDING):
            if len(done) == renamed:
                raise KeyboardInterrupt  # the process dies here
            real_replace(src, dst)
            done.append(Path(dst).name)
        else:
            real_replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        ck.commit(tmp_path, writers(2), 2)
    monkeypatch.undo()
    # half-way: the journal names the pending set, some files hold step 2, some step 1
    j = journal(tmp_path)
    assert j["step"] == 2 and "pending" in j
    texts = {n: (tmp_path / n).read_text() for n in (R.BEST, R.LAST, R.STATE)}
    assert sum("step 2" in t for t in texts.values()) == renamed

    assert ck.recover(tmp_path) == 2
    for n in (R.BEST, R.LAST, R.STATE):
        assert (tmp_path / n).read_text() == f"{n} at step 2\n"
    assert journal(tmp_path) == {"step": 2, "files": sorted([R.BEST, R.LAST, R.STATE])}
    assert leftovers(tmp_path) == []
    assert ck.recover(tmp_path) == 2  # idempotent


def test_a_full_disk_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path):
    ck.commit(tmp_path, writers(1), 1)
    before = hashes(tmp_path)

    def full(tmp):
        Path(tmp).write_bytes(b"x" * 1000)  # part of the file reached the disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    files = writers(2)
    files[R.LAST] = full
    with pytest.raises(OSError) as e:
        ck.commit(tmp_path, files, 2)
    assert e.value.errno == errno.ENOSPC
    assert hashes(tmp_path) == before
    assert leftovers(tmp_path) == []
    assert ck.recover(tmp_path) == 1


# ----------------------------------------------------------------------------- 3. disk full


def state_size(baseline: Path, tmp_path: Path, step: int) -> int:
    """The size training_state.pt has at the checkpoint of ``step``: the baseline's final state
    with the history it had then, saved under the name ``commit`` gives it (torch stores the
    file's name in front of every record, so the name's length counts too)."""
    s = torch.load(baseline / R.STATE, weights_only=True)
    path = tmp_path / f".{R.STATE}.{step}{ck.PENDING}"
    torch.save(dict(s, step=step, history=[r for r in s["history"] if r["step"] <= step]), path)
    size = path.stat().st_size
    path.unlink()
    return size


@needs_fsize
@pytest.mark.slow
def test_a_full_disk_during_training_stops_with_one_line_and_a_good_checkpoint(
        tiny_data, baseline, tmp_path):
    # the state file grows with its history (and the step's digits): a limit between its
    # sizes at steps 9 and 12 lets the first three checkpoints through and fails the fourth
    assert state_size(baseline, tmp_path, STEPS) == (baseline / R.STATE).stat().st_size
    at9, at12 = state_size(baseline, tmp_path, 9), state_size(baseline, tmp_path, 12)
    assert at12 - at9 > 100, (at9, at12)
    limit = (at9 + at12) // 2
    run_dir = tmp_path / "run"
    r = run("train", tiny_data, "--out", run_dir, *TRAIN, limit=limit)
    err = lines(r.stderr)
    assert r.returncode == 1, r.stderr[-3000:]
    assert len(err) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    step = consistent_step(run_dir)
    assert step == 9

    r2 = run("train", tiny_data, "--out", run_dir, *TRAIN, "--resume")
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert consistent_step(run_dir) == STEPS
    assert_same_weights(baseline / R.LAST, run_dir / R.LAST)
    assert metrics_rows(baseline) == metrics_rows(run_dir)
    # last, so that a wrong message does not hide the checks above
    assert "disk full" in err[0], f"stopped at step {step + 3} with: {err[0]}"


# ------------------------------------------------------------------------ 4. prepare: full disk


@needs_fsize
@pytest.mark.slow
@pytest.mark.parametrize("limit", [4096, 100_000], ids=["tokenizer.json", "token-arrays"])
def test_a_full_disk_during_prepare_leaves_no_folder_or_the_old_one(folk, folk_data, tmp_path,
                                                                    limit):
    # 4096 bytes: tokenizer.json (9.5 KB, written by Python) fails; 100 KB: it fits and the
    # token arrays (~150 KB, written by numpy) fail
    new, good = tmp_path / "new", tmp_path / "good"
    shutil.copytree(folk_data, good)
    before = hashes(good)
    assert {"manifest.csv", "meta.json", "train/tokens.npy"} <= set(before)
    results = run_together(["prepare", folk, "--out", new, "--workers", "2", "--quiet"],
                           ["prepare", folk, "--out", good, "--workers", "2", "--quiet"],
                           limit=limit)
    for r in results:
        assert r.returncode == 1 and len(lines(r.stderr)) == 1, r.stderr[-3000:]
        assert "Traceback" not in r.stderr
    assert not new.exists()
    assert hashes(good) == before
    assert not list(good.glob(".staging-*")) and not list(good.rglob("*.tmp"))
    for r in results:  # last, so that a wrong message does not hide the checks above
        assert "disk full" in r.stderr, r.stderr


# ----------------------------------------------------------------------------- 5. two writers


@pytest.mark.slow
def test_a_second_writer_is_refused_while_the_folder_is_in_use(folk, tiny_data, run_copy,
                                                                tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    before = hashes(run_copy)
    # this process holds both locks (a new open file description each: the flocks conflict)
    with ck.FolderLock(out, "prepare"), ck.FolderLock(run_copy, "train"):
        results = run_together(["prepare", folk, "--out", out, "--workers", "2", "--quiet"],
                               ["train", tiny_data, "--out", run_copy, *TRAIN, "--resume"])
    for r in results:
        err = lines(r.stderr)
        assert r.returncode == 2 and len(err) == 1 and "in use" in err[0], r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [".lock"]
    assert hashes(run_copy) == before


# ----------------------------------------------------------------------------- 6. kill prepare


def wait_gone(pgid: int, timeout: float = 60) -> None:
    """Wait until every process of the group (the parent's orphaned workers) has ended."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(pgid, signal.SIGKILL)
    pytest.fail(f"processes of group {pgid} still ran {timeout} s after their parent ended")


def start_prepare(songs: Path, out: Path, err_file: Path, cache: Path) -> subprocess.Popen:
    # its own process group; stderr to a file, which the workers inherit too (a pipe would
    # stay open as long as an orphaned worker lives)
    # Ctrl-C as a terminal delivers it: a shell that starts jobs in the background (as a
    # CI runner or `make test &` may) leaves SIGINT ignored, and an ignored signal stays
    # ignored across exec; a handler of ours does not (exec resets it to the default)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with open(err_file, "w") as err:
            return subprocess.Popen(mtvae("prepare", songs, "--out", out, "--workers", "2",
                                          "--quiet"),
                                    env=env(MTVAE_CACHE=str(cache)), stdout=subprocess.DEVNULL,
                                    stderr=err, start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, old)


def cached(out: Path) -> int:
    return len(list(out.glob("cache/*/*/*.npz")))


@pytest.mark.slow
def test_killing_prepare_leaves_nothing_a_rerun_cannot_clean(pop909, tmp_path):
    songs = link_songs(tmp_path / "songs", pop909[:100])
    cache = tmp_path / "music21-cache"
    out, err_file = tmp_path / "data", tmp_path / "stderr.txt"

    p = start_prepare(songs, out, err_file, cache)
    try:
        wait_for(lambda: cached(out) >= 3, p, "the workers' first cache entries")
        os.kill(p.pid, signal.SIGKILL)  # the parent only: its 2 workers are orphaned
        p.wait(timeout=60)
        assert p.returncode == -signal.SIGKILL
        wait_gone(p.pid)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert "Traceback" not in err_file.read_text() and err_file.read_text().strip() == ""
    assert not (out / "meta.json").exists()

    # what a kill during the write-out leaves, for the re-run to clean
    (out / ".staging-killed").mkdir()
    (out / ".staging-killed" / "tokenizer.json").write_text("{}")
    (out / ".meta.json.tmp").write_text("{")
    entry = next(out.glob("cache/*/*/*.npz"))
    (entry.parent / "killed.tmp").write_bytes(b"PK")

    r = run("prepare", songs, "--out", out, "--workers", "2", "--quiet",
            MTVAE_CACHE=str(cache))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert (out / "meta.json").is_file()
    assert not list(out.glob(".staging-*")) and not list(out.rglob("*.tmp"))
    report = json.loads((out / "report.json").read_text())
    assert report["reused_from_cache"] >= 3 and report["kept"] > 90

    # Ctrl-C in the terminal: SIGINT to the whole process group
    out2, err2 = tmp_path / "data2", tmp_path / "stderr2.txt"
    p = start_prepare(songs, out2, err2, tmp_path / "music21-cache-2")
    try:
        wait_for(lambda: cached(out2) >= 3, p, "the workers' first cache entries")
        alive, n = p.poll() is None, cached(out2)  # what the signal finds (a flake's clue)
        os.killpg(p.pid, signal.SIGINT)
        p.wait(timeout=120)
        wait_gone(p.pid)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    text = err2.read_text()
    assert alive, f"prepare ended before the signal ({n} cache entries): the test was too slow"
    assert p.returncode == 130, (f"{n} cache entries at the signal; this process's SIGINT "
                                 f"handler {signal.getsignal(signal.SIGINT)}; stderr: {text[-3000:]}")
    assert "Traceback" not in text
    assert lines(text) == ["mtvae prepare: interrupted"]
    assert not out2.exists()  # a new DATA_DIR that did not come about leaves nothing


# ----------------------------------------------------------------------------- 7. bad resumes


def resume(capsys, data, run_dir, *extra) -> tuple[int, list[str]]:
    code = main(["train", str(data), "--out", str(run_dir), "--resume", "--device", "cpu",
                 "--quiet", *map(str, extra)])
    return code, lines(capsys.readouterr().err)


def damage_state_half(run_dir: Path) -> None:
    p = run_dir / R.STATE
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def damage_state_random(run_dir: Path) -> None:
    (run_dir / R.STATE).write_bytes(random.Random(1).randbytes(4096))


def edit_config(change):
    def f(run_dir: Path) -> None:
        cfg = json.loads((run_dir / R.CONFIG).read_text())
        change(cfg)
        (run_dir / R.CONFIG).write_text(json.dumps(cfg))
    return f


def config_not_json(run_dir: Path) -> None:
    (run_dir / R.CONFIG).write_text('{"model": {"d_model": 64,')


DAMAGE = {
    "state-truncated": (damage_state_half, "damaged"),
    "state-random-bytes": (damage_state_random, "damaged"),
    "config-not-json": (config_not_json, "not valid JSON"),
    "config-missing-key": (edit_config(lambda c: c["train"].pop("lr")), "missing lr"),
    "config-wrong-type": (edit_config(lambda c: c["model"].__setitem__("d_model", "64")),
                          "d_model = '64'"),
}


@pytest.mark.slow
def test_resume_refuses_bad_input_before_writing_anything(tiny_data, baseline, tmp_path,
                                                          capsys):
    other = tmp_path / "other-data"  # the same songs under another tokenizer
    shutil.copytree(tiny_data, other, ignore=shutil.ignore_patterns(".lock"))
    tok = json.loads((other / "tokenizer.json").read_text())
    tok["config"]["num_velocities"] = 16
    (other / "tokenizer.json").write_text(json.dumps(tok))

    cases = [(name, fn, (), want) for name, (fn, want) in DAMAGE.items()]
    cases += [("--lr", None, ("--lr", "0.001"), "--lr 0.001"),
              ("--batch-size", None, ("--batch-size", "2"), "--batch-size 2"),
              ("other-tokenizer", None, (), "differs from this run's tokenizer")]
    for name, damage, extra, want in cases:
        run_dir = tmp_path / name
        shutil.copytree(baseline, run_dir)
        if damage:
            damage(run_dir)
        before = hashes(run_dir)
        code, err = resume(capsys, other if name == "other-tokenizer" else tiny_data, run_dir, *extra)
        assert code == 2 and len(err) == 1, (name, err)
        assert want in err[0], (name, err[0])
        assert hashes(run_dir) == before, name

    # --max-steps is applied: the run goes on to the new end
    run_dir = tmp_path / "longer"
    shutil.copytree(baseline, run_dir)
    code, err = resume(capsys, tiny_data, run_dir, "--max-steps", STEPS + 3)
    assert code == 0, err
    assert consistent_step(run_dir) == STEPS + 3
    assert json.loads((run_dir / R.CONFIG).read_text())["train"]["max_steps"] == STEPS + 3
