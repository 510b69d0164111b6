"""Hardening probe (issue #9): run mtvae's commands over a corpus of hostile MIDI files.

Builds ``--n`` files with ``tests/midifuzz.py`` (seeded), then runs, each as a subprocess with
a wall-clock limit and a resident-memory watchdog:

* ``prepare``: ``mtvae prepare CORPUS --out D --workers 1 --quiet`` once over the whole corpus
  (per file, the outcome is read from D/report.json and manifest.csv: kept with its length in
  bars, or skipped with a reason; a skip whose reason names an exception, e.g. "tokenizer failed:
  ZeroDivisionError", counts as ``internal``). If that one call does not finish cleanly,
  ``prepare-each`` runs prepare on every file alone to find the culprits. ``--prepare-via api``
  calls ``mtvae.data.pipeline.prepare`` instead of the CLI (for when the CLI is mid-edit);
* for every file: ``render``, ``reconstruct``, ``continue``, ``transfer`` and ``interpolate``
  (against a real Nottingham tune), on a trained RUN_DIR.

Every call is classified:

* ``ok``: exit 0; ``refused``: exit 2 with one line on stderr (a clean ``UserError``);
* ``noisy``: exit 2 without a traceback but with more than one stderr line;
* ``internal``: exit 1 with the CLI's catch-all line "mtvae CMD: internal error: ..." (a bug the
  CLI hid; one example of each distinct one is run again with MTVAE_DEBUG=1 for its traceback);
* ``traceback``: "Traceback (most recent call last)" on stderr;
* ``crash``: killed by a signal it did not get from us (segfault, abort);
* ``hang``: still running after ``--timeout`` seconds (killed);
* ``memory``: resident memory of its process group passed ``--mem-limit-mb`` (killed; polled
  every 0.1 s, so a fast allocator can overshoot by a few hundred MB before the kill), or the
  CLI's "error: out of memory" (a MemoryError it caught);
* ``other``: any other exit code.

The peak RSS of a call is the larger of the polled maximum and the kernel's ``ru_maxrss``.

    .venv/bin/python bench/fuzz.py --run RUN_DIR [--n 120] [--seed 0] [--jobs 2] [--timeout 60]
        [--commands prepare,render,reconstruct,continue,transfer,interpolate] [--limit N]
        [--families huge-delta,division] [--json bench/results/fuzz.json] [--workdir DIR]

Make a RUN_DIR once with (a few seconds on CPU):

    mtvae prepare /work/shared/data/nottingham --out /tmp/fz/data --max-files 40 --workers 1 --quiet
    mtvae train /tmp/fz/data --out /tmp/fz/run --preset tiny --max-steps 20 --val-every 10 \\
        --batch-size 4 --segments 2 --quiet --device cpu

Exit status: 0 when every call is ok or refused, 1 otherwise (so CI can run it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import midifuzz  # noqa: E402

GOOD = Path("/work/shared/data/nottingham/ashover1.mid")
PER_FILE = ("render", "reconstruct", "continue", "transfer", "interpolate")
ALL_COMMANDS = ("prepare",) + PER_FILE + ("prepare-each",)
DEFAULT_COMMANDS = ("prepare",) + PER_FILE
STATUSES = ("ok", "refused", "noisy", "internal", "traceback", "crash", "hang", "memory", "other")
BAD = STATUSES[2:]
SEVERITY = {"memory": 0, "hang": 1, "crash": 2, "traceback": 3, "internal": 4, "other": 5, "noisy": 6}
PAGE = os.sysconf("SC_PAGE_SIZE")
TRACEBACK = "Traceback (most recent call last)"


# ----------------------------------------------------------------------------- one call


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _session_pids(sid: int) -> list[int]:
    """Processes of session ``sid`` (the child is started in a session of its own)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
        if len(fields) > 3 and int(fields[3]) == sid:
            out.append(int(name))
    return out


ACTIVE: set[int] = set()  # process groups of the calls in flight, killed if we are stopped


def _stop(signum, frame) -> None:
    for pid in list(ACTIVE):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    os._exit(128 + signum)


def _where(frames: list[tuple[str, str, str]]) -> str:
    """The innermost mtvae frame (and the innermost frame, when that is a library's)."""
    own = [f for f in frames if "/mtvae/" in f[0]]
    if not own:
        return ""
    f = own[-1]
    where = f"{f[0].split('/mtvae/', 1)[1]}:{f[1]} in {f[2]}"
    if frames[-1] != f:
        g = frames[-1]
        where += f" -> {'/'.join(g[0].split('/')[-2:])}:{g[1]} in {g[2]}"
    return where


def run_call(argv: list[str], cwd: Path, timeout: float, mem_limit: int, env: dict) -> dict:
    """Run argv with a wall-clock limit and an RSS watchdog; classify the outcome."""
    cwd.mkdir(parents=True, exist_ok=True)
    out_path, err_path = cwd / "stdout.txt", cwd / "stderr.txt"
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1), (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
        ], setsid=True)  # a session of its own: the watchdog kills the whole group
    ACTIVE.add(pid)
    killed, peak, pids, polls = None, 0, [pid], 0
    status = rusage = None
    while True:
        wpid, status, rusage = os.wait4(pid, os.WNOHANG)
        if wpid == pid:
            break
        if polls % 5 == 0:  # a full scan for helpers now and then, the known pids every time
            pids = _session_pids(pid) or [pid]
        polls += 1
        rss = sum(_rss_bytes(p) for p in pids)
        peak = max(peak, rss)
        elapsed = time.monotonic() - t0
        if rss > mem_limit or elapsed > timeout:
            killed = "memory" if rss > mem_limit else "hang"
            # SIGABRT first: with PYTHONFAULTHANDLER=1 the child prints its Python stack, which
            # says where it was stuck; a short grace (shorter when memory is growing), then SIGKILL
            try:
                os.kill(pid, signal.SIGABRT)
            except ProcessLookupError:
                pass
            grace = time.monotonic() + (0.5 if killed == "memory" else 2.0)
            while time.monotonic() < grace:
                wpid, status, rusage = os.wait4(pid, os.WNOHANG)
                if wpid == pid:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _, status, rusage = os.wait4(pid, 0)
            break
        time.sleep(0.1)
    seconds = time.monotonic() - t0
    try:  # helpers left in the group (none expected)
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    ACTIVE.discard(pid)
    peak = max(peak, rusage.ru_maxrss * 1024 if rusage else 0)
    stderr = err_path.read_text(errors="replace")
    stdout = out_path.read_text(errors="replace")
    rc = os.waitstatus_to_exitcode(status)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if killed:
        kind = killed
    elif TRACEBACK in stderr:
        kind = "traceback"
    elif rc < 0:
        kind = "crash"
    elif rc == 0:
        kind = "ok"
    elif rc == 1 and lines and ": internal error: " in lines[-1]:
        kind = "internal"
    elif rc == 1 and lines and lines[-1].endswith(": error: out of memory"):
        kind = "memory"
    elif rc == 2:
        kind = "refused" if len(lines) == 1 else "noisy"
    else:
        kind = "other"
    where = ""
    if kind == "traceback":  # innermost frame last
        where = _where(re.findall(r'File "([^"]+)", line (\d+), in (\S+)', stderr))
    elif killed:  # faulthandler's dump: innermost frame first
        dump = stderr[stderr.find("most recent call first"):]
        where = _where(re.findall(r'File "([^"]+)", line (\d+) in (\S+)', dump)[::-1])
    last = lines[-1] if lines else ""
    if killed:
        last = f"killed: {killed} after {seconds:.1f}s at {peak / 2**20:.0f} MB RSS"
    elif rc < 0:
        last = f"signal {-rc} ({signal.Signals(-rc).name})" + (f"; {last}" if last else "")
    return {"status": kind, "rc": rc, "seconds": round(seconds, 2),
            "peak_rss_mb": round(peak / 2**20, 1), "last_line": last[:400], "where": where,
            "stderr_tail": stderr[-3000:], "stdout_tail": stdout[-1000:]}


# ----------------------------------------------------------------------------- the probe


# ``--prepare-via api``: the pipeline through the Python API, for when the CLI's prepare is broken
# mid-edit; a UserError becomes one line and exit 2, as the CLI does.
PREPARE_API = (
    "import sys\n"
    "from mtvae.errors import UserError\n"
    "from mtvae.data.pipeline import prepare, summarize\n"
    "try:\n"
    "    r = prepare([sys.argv[1]], sys.argv[2], workers=1, progress=False)\n"
    "except UserError as e:\n"
    "    print(f'mtvae prepare: error: {e}', file=sys.stderr)\n"
    "    sys.exit(2)\n"
    "print(summarize(r))\n"
)


def prepare_argv(mtvae: list[str], src: Path, out: Path, via: str = "cli") -> list[str]:
    if via == "api":
        return [mtvae[0], "-c", PREPARE_API, str(src), str(out)]
    return mtvae + ["prepare", str(src), "--out", str(out), "--workers", "1", "--quiet"]


def command_argv(cmd: str, mtvae: list[str], run: Path, f: Path, out: Path, good: Path,
                 prepare_via: str = "cli") -> list[str]:
    gen = ["--no-audio", "--quiet", "--seed", "0", "--out", str(out / "gen")]
    if cmd == "render":
        return mtvae + ["render", str(f), "--png", str(out / "x.png"), "--wav", str(out / "x.wav")]
    if cmd == "reconstruct":
        return mtvae + ["reconstruct", str(run), str(f), "--bars", "2"] + gen
    if cmd == "continue":
        return mtvae + ["continue", str(run), str(f), "--bars", "1"] + gen
    if cmd == "transfer":
        return mtvae + ["transfer", str(run), str(f), "--bars", "2"] + gen
    if cmd == "interpolate":
        return mtvae + ["interpolate", str(run), str(f), str(good), "--bars", "1", "--steps", "2"] + gen
    if cmd == "prepare-each":
        src = out / "src"
        src.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, src / f.name)
        return prepare_argv(mtvae, src, out / "data", prepare_via)
    raise ValueError(cmd)


def child_env(workdir: Path) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg", PYTHONFAULTHANDLER="1",
               MTVAE_CACHE=str(workdir / "mtvae-cache"), PYTHONUNBUFFERED="1")
    return env


def normalize(line: str) -> str:
    """A failure's last line without the numbers and paths that differ between files."""
    line = re.sub(r"/\S+", "PATH", line)
    return re.sub(r"\d+(\.\d+)?", "N", line)


def prepare_outcomes(data_dir: Path, files: list[Path]) -> dict[str, dict]:
    """Per file of a whole-corpus prepare: kept, or skipped with the reason."""
    rep = data_dir / "report.json"
    out = {f.name: {"status": "ok", "last_line": "kept"} for f in files}
    if not rep.is_file():
        return {}
    man = data_dir / "manifest.csv"
    if man.is_file():
        import csv

        with open(man, newline="") as fh:
            for row in csv.DictReader(fh):
                name = Path(row["file"]).name
                if name in out:
                    out[name] = {"status": "ok", "bars": int(row["bars"]), "tokens": int(row["tokens"]),
                                 "last_line": f"kept: {row['bars']} bars, {row['tokens']} tokens"}
    for s in json.loads(rep.read_text()).get("skipped", []):
        name = Path(s["path"]).name
        name = name if name.endswith(".mid") else name + ".mid"
        if name in out:  # an exception caught by prepare's own catch-all is a hidden bug
            hidden = re.search(r"\b[A-Z]\w*(Error|Exception)\b", s["reason"]) and \
                "not valid MIDI" not in s["reason"]
            out[name] = {"status": "internal" if hidden else "refused",
                         "last_line": f"skipped: {s['reason']}"}
    return out


def tree_state() -> dict:
    """The code under test: HEAD and a hash of the uncommitted changes (read-only git calls)."""
    import hashlib
    import subprocess

    def git(*args) -> bytes:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return b""
    diff = git("diff", "HEAD") + git("ls-files", "--others", "--exclude-standard", "src")
    return {"head": git("rev-parse", "HEAD").decode().strip(),
            "dirty_files": git("status", "--short", "src").decode().count("\n"),
            "diff_sha1": hashlib.sha1(diff).hexdigest()[:12] if diff else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, type=Path, metavar="RUN_DIR")
    p.add_argument("--n", type=int, default=120, help="corpus size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--commands", default=",".join(DEFAULT_COMMANDS),
                   help=f"comma-separated subset of {','.join(ALL_COMMANDS)}")
    p.add_argument("--start", type=int, default=0,
                   help="skip the first N files (e.g. --n 300 --start 120: the files a 120 run lacks)")
    p.add_argument("--limit", type=int, help="only the first N files (after --families)")
    p.add_argument("--families", help="comma-separated families to keep")
    p.add_argument("--jobs", type=int, default=2, help="parallel subprocesses (at most 2)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
    p.add_argument("--prepare-timeout", type=float, default=600.0)
    p.add_argument("--mem-limit-mb", type=int, default=4096)
    p.add_argument("--prepare-via", choices=("cli", "api"), default="cli",
                   help="api: call mtvae.data.pipeline.prepare in the subprocess, not the CLI")
    p.add_argument("--good", type=Path, default=GOOD, help="the real second song of interpolate")
    p.add_argument("--workdir", type=Path, help="corpus and scratch (default: a new temp dir)")
    p.add_argument("--corpus", type=Path, help="use this existing corpus instead of building one")
    p.add_argument("--keep-outputs", action="store_true", help="keep every call's output folder")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "fuzz.json")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    tree_start = tree_state()
    commands = [c for c in a.commands.split(",") if c]
    for c in commands:
        if c not in ALL_COMMANDS:
            p.error(f"unknown command {c}; choose from {', '.join(ALL_COMMANDS)}")
    jobs = max(1, min(a.jobs, 2))
    if not (a.run / "config.json").exists() and any(c in PER_FILE[1:] for c in commands):
        p.error(f"{a.run} does not look like a trained RUN_DIR (no config.json)")
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="mtvae-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = a.corpus or workdir / "corpus"
    t = time.perf_counter()
    if a.corpus is None:
        files = midifuzz.build_corpus(corpus, a.n, a.seed)
        print(f"corpus: {len(files)} files in {corpus} ({time.perf_counter() - t:.1f}s)")
    else:
        files = sorted(corpus.glob("*.mid"))
        print(f"corpus: {len(files)} files from {corpus}")
    if a.families:
        keep = set(a.families.split(","))
        files = [f for f in files if midifuzz.family_of(f) in keep]
    files = files[a.start:]
    if a.limit:
        files = files[:a.limit]
    mtvae = [sys.executable, "-m", "mtvae"]
    env = child_env(workdir)
    mem_limit = a.mem_limit_mb * 2**20
    calls: list[dict] = []
    lock = threading.Lock()
    done = [0]

    def record(entry: dict, total: int) -> None:
        with lock:
            calls.append(entry)
            done[0] += 1
            if not a.quiet and (entry["status"] in BAD or done[0] % 25 == 0 or done[0] == total):
                flag = "" if entry["status"] in ("ok", "refused") else "  <--"
                print(f"[{done[0]}/{total}] {entry['command']:12s} {entry['file']:45s} "
                      f"{entry['status']:9s} {entry['seconds']:6.1f}s {entry['peak_rss_mb']:7.0f}MB "
                      f"{entry['last_line'][:90]}{flag}", flush=True)

    def one(cmd: str, f: Path, idx: int, total: int) -> None:
        out = workdir / "calls" / f"{idx:05d}-{cmd}"
        argv = command_argv(cmd, mtvae, a.run, f, out, a.good, a.prepare_via)
        res = run_call(argv, out, a.timeout, mem_limit, env)
        entry = {"file": f.name, "family": midifuzz.family_of(f), "command": cmd,
                 "argv": " ".join(x if len(x) < 200 else "<script>" for x in argv[1:]), **res}
        if not a.keep_outputs:
            shutil.rmtree(out, ignore_errors=True)
        record(entry, total)

    prepare_call = None
    if "prepare" in commands:
        out = workdir / "calls" / "prepare-all"
        data = out / "data"
        src = corpus
        if a.families or a.limit or a.start:  # a folder with just the chosen files
            src = out / "src"
            src.mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy(f, src / f.name)
        argv = prepare_argv(mtvae, src, data, a.prepare_via)
        print(f"prepare over {len(files)} files ...", flush=True)
        res = run_call(argv, out, a.prepare_timeout, mem_limit, env)
        outcomes = prepare_outcomes(data, files)
        shown = " ".join(x if len(x) < 200 else "<script>" for x in argv[1:])
        prepare_call = {"command": "prepare", "argv": shown, **res,
                        "kept": sum(o["status"] == "ok" for o in outcomes.values())}
        print(f"prepare: {res['status']} rc={res['rc']} {res['seconds']:.1f}s "
              f"{res['peak_rss_mb']:.0f}MB; kept {prepare_call['kept']} of {len(files)}; "
              f"{res['last_line'][:120]}", flush=True)
        if res["status"] in ("ok", "refused") and outcomes:
            for f in files:
                o = outcomes[f.name]
                calls.append({"file": f.name, "family": midifuzz.family_of(f), "command": "prepare",
                              "status": o["status"], "rc": res["rc"], "seconds": res["seconds"],
                              "peak_rss_mb": res["peak_rss_mb"], "last_line": o["last_line"],
                              "where": "", "per_file_from": "report.json",
                              **{k: o[k] for k in ("bars", "tokens") if k in o}})
        elif "prepare-each" not in commands:
            print("prepare over the corpus failed: running prepare-each to find the files",
                  flush=True)
            commands.append("prepare-each")
        if not a.keep_outputs:
            shutil.rmtree(out / "src", ignore_errors=True)
            shutil.rmtree(data, ignore_errors=True)

    tasks = [(cmd, f) for f in files for cmd in commands if cmd in PER_FILE or cmd == "prepare-each"]
    t = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        futs = [pool.submit(one, cmd, f, i, len(tasks)) for i, (cmd, f) in enumerate(tasks)]
        for fu in futs:
            fu.result()
    wall = time.perf_counter() - t

    # ------------------------------------------------------------------ report
    order = {f.name: i for i, f in enumerate(files)}
    cmd_order = {c: i for i, c in enumerate(ALL_COMMANDS)}
    calls.sort(key=lambda c: (order.get(c["file"], 0), cmd_order[c["command"]]))
    table: dict = defaultdict(lambda: {s: 0 for s in STATUSES} | {"n": 0, "max_s": 0.0, "max_mb": 0.0})
    for c in calls:
        row = table[(c["family"], c["command"])]
        row["n"] += 1
        row[c["status"]] += 1
        row["max_s"] = max(row["max_s"], c["seconds"])
        row["max_mb"] = max(row["max_mb"], c["peak_rss_mb"])
    fam_order = {f: i for i, f in enumerate(midifuzz.FAMILIES)}
    keys = sorted(table, key=lambda k: (fam_order.get(k[0], 99), cmd_order[k[1]]))
    short = {"ok": "ok", "refused": "ref", "noisy": "nsy", "internal": "int", "traceback": "tb",
             "crash": "crs", "hang": "hng", "memory": "mem", "other": "oth"}
    hdr = (f"{'family':24s} {'command':12s} {'n':>3s} " + " ".join(f"{short[s]:>3s}" for s in STATUSES)
           + f" {'max_s':>6s} {'max_MB':>7s}")
    lines = [hdr, "-" * len(hdr)]
    for k in keys:
        r = table[k]
        bad = any(r[s] for s in BAD)
        lines.append(f"{k[0]:24s} {k[1]:12s} {r['n']:3d} " + " ".join(f"{r[s]:3d}" for s in STATUSES)
                     + f" {r['max_s']:6.1f} {r['max_mb']:7.0f}" + ("  <--" if bad else ""))
    totals = defaultdict(Counter)
    for c in calls:
        totals[c["command"]][c["status"]] += 1
        totals["ALL"][c["status"]] += 1
    lines += ["", f"{'command':12s} " + " ".join(f"{s:>9s}" for s in STATUSES)]
    for cmd, cnt in sorted(totals.items(), key=lambda x: cmd_order.get(x[0], 99)):
        lines.append(f"{cmd:12s} " + " ".join(f"{cnt[s]:9d}" for s in STATUSES))

    failures: dict = {}
    for c in calls:
        if c["status"] not in BAD:
            continue
        where = c.get("where", "")
        if c["status"] in ("hang", "memory"):  # a stack sampled at the kill: the mtvae frame only
            where = where.split(" -> ")[0]
        key = (c["status"], c["command"], where,
               "killed" if c["last_line"].startswith("killed:") else normalize(c["last_line"]))
        fl = failures.setdefault(key, {"status": c["status"], "command": c["command"],
                                       "last_line": c["last_line"], "where": c.get("where", ""),
                                       "example": str(corpus / c["file"]),
                                       "describe": midifuzz.describe(corpus / c["file"]),
                                       "families": Counter(), "count": 0, "max_s": 0, "max_mb": 0})
        fl["families"][c["family"]] += 1
        fl["count"] += 1
        fl["max_s"] = max(fl["max_s"], c["seconds"])
        fl["max_mb"] = max(fl["max_mb"], c["peak_rss_mb"])
    flist = sorted(failures.values(), key=lambda f: (SEVERITY[f["status"]], -f["max_mb"], -f["count"]))
    debug_env = dict(env, MTVAE_DEBUG="1")
    for i, f in enumerate(flist):  # where in the code: one example again, with the traceback
        if f["status"] != "internal" or f["command"] not in PER_FILE + ("prepare-each",):
            continue
        out = workdir / "calls" / f"debug-{i:03d}"
        res = run_call(command_argv(f["command"], mtvae, a.run, Path(f["example"]), out, a.good,
                                    a.prepare_via),
                       out, a.timeout, mem_limit, debug_env)
        f["debug"] = {k: res[k] for k in ("status", "last_line", "where", "stderr_tail")}
        f["where"] = res["where"]
        if not a.keep_outputs:
            shutil.rmtree(out, ignore_errors=True)
    lines += ["", f"distinct failures: {len(flist)}"]
    for f in flist:
        fams = ", ".join(f"{k}×{v}" for k, v in f["families"].most_common())
        lines.append(f"- [{f['status']}] {f['command']}: {f['last_line'].split(' (run with MTVAE_DEBUG')[0][:200]}")
        if f["where"]:
            lines.append(f"    at {f['where']}")
        if f.get("debug") and f["debug"]["last_line"] not in f["last_line"]:
            lines.append(f"    with MTVAE_DEBUG=1: [{f['debug']['status']}] {f['debug']['last_line'][:160]}")
        lines.append(f"    {f['count']} call(s), max {f['max_s']:.1f}s / {f['max_mb']:.0f} MB; "
                     f"families: {fams}")
        lines.append(f"    e.g. {f['example']}  ({f['describe']})")
    longest = sorted((c for c in calls if c.get("bars")), key=lambda c: -c["bars"])[:8]
    if longest:
        lines += ["", "prepare: the longest songs it kept"]
        lines += [f"  {c['bars']:8d} bars {c['tokens']:9d} tokens  {c['file']}" for c in longest]
    peak = max((c["peak_rss_mb"] for c in calls), default=0)
    n_bad = sum(c["status"] in BAD for c in calls)
    lines += ["", f"{len(calls)} file×command results, {n_bad} bad; peak RSS {peak:.0f} MB; "
              f"per-file calls took {wall:.0f}s on {jobs} job(s); corpus {corpus}"]
    report = "\n".join(lines)
    print(report)

    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({
        "config": {"tree_start": tree_start, "tree_end": tree_state(), "n": a.n,
                   "prepare_via": a.prepare_via, "seed": a.seed, "commands": commands, "timeout_s": a.timeout,
                   "mem_limit_mb": a.mem_limit_mb, "jobs": jobs, "run": str(a.run),
                   "good": str(a.good), "corpus": str(corpus), "files": len(files),
                   "start": a.start, "limit": a.limit, "families": a.families},
        "prepare_call": prepare_call,
        "table": [{"family": k[0], "command": k[1], **table[k]} for k in keys],
        "totals": {k: dict(v) for k, v in totals.items()},
        "failures": [{**f, "families": dict(f["families"])} for f in flist],
        "calls": calls,
    }, indent=1))
    print(f"wrote {a.json}")
    return 1 if n_bad or (prepare_call and prepare_call["status"] not in ("ok", "refused")) else 0


if __name__ == "__main__":
    sys.exit(main())
