"""``prepare``: sources -> filtered songs -> tokens + bar data -> DATA_DIR.

Two parallel passes over the songs:

1. *inspect* (fast: read, hash, parse): content hash, programs, note count. The program filter,
   per-genre sampling and the split need only this.
2. *tokenize* (the slow part) for the songs kept, with a per-file cache keyed by content hash
   and tokenizer settings, so a re-run only processes new or changed files.

The outputs are staged and moved into DATA_DIR at the end with ``meta.json`` written last; a
run that dies midway leaves no ``meta.json``, and ``DataDir`` refuses such a folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import warnings
from collections import Counter, defaultdict
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .. import validate as V
from ..checkpoint import FolderLock, write_failure
from ..errors import UserError
from . import tokens as T
from .midi import DEFAULT_LIMITS, Limits, MidiRejected, read_bytes, read_midi
from .sources import SourceItem, list_source, materialize, read_labels

FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
UNKNOWN_GENRE = "unknown"
# What the cache depends on besides the file: change any of it and old entries are not reused.
def cache_key(limits: Limits = DEFAULT_LIMITS) -> str:
    return hashlib.sha1(
        repr([sorted(T.TOKENIZER_PARAMS.items()), T.POS_PER_BEAT, T.SUBBEATS_PER_BEAT, 1,
              limits.key()]).encode()
    ).hexdigest()[:12]



def split_of(content_hash: str) -> str:
    """90/5/5 by the content hash: stable when files are added, one split per duplicate."""
    bucket = int(content_hash[:8], 16) % 100
    return "train" if bucket < 90 else "valid" if bucket < 95 else "test"


# ----------------------------------------------------------------------------- workers

_TOKENIZER = None
_TABLES = None
_LIMITS = DEFAULT_LIMITS


def _init_worker(limits: Limits = DEFAULT_LIMITS, quiet_stderr: bool = False) -> None:
    global _TOKENIZER, _TABLES, _LIMITS
    warnings.filterwarnings("ignore")  # miditok/music21 chatter would break the progress bar
    _TOKENIZER = T.make_tokenizer()
    _TABLES = T.TokenTables(_TOKENIZER)
    _LIMITS = limits
    if quiet_stderr:
        import signal
        import sys

        # a worker process: Ctrl-C is the parent's to handle, and if the parent dies the
        # worker's failing result pipe must not print a traceback (the parent reports)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the worker


CONVERT_SECONDS = 30  # a music21 work that takes longer to convert is skipped (some never end)


@contextmanager
def _time_limit(seconds: float):
    """TimeoutError in the code inside after ``seconds`` (SIGALRM: the main thread of a
    process, as in prepare's workers; elsewhere no limit)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"took over {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _inspect(item: SourceItem) -> dict:
    """Hash and read one file through the MIDI reader. Never raises: errors come back as a
    reason (the reader's text, the one every command gives for the same file)."""
    try:
        with _time_limit(CONVERT_SECONDS):
            path = materialize(item)
    except Exception as e:  # noqa: BLE001 - any failure to convert skips the file
        return {"error": f"cannot convert: {type(e).__name__}: {' '.join(str(e).split())[:200]}"}
    try:
        data = read_bytes(path, _LIMITS, item.name)
        digest = hashlib.sha1(data).hexdigest()
        read = read_midi(data, _LIMITS, item.name)
    except MidiRejected as e:
        return {"error": e.reason, "too_long": e.kind == "length"}
    except Exception as e:  # noqa: BLE001 - a reader bug must not stop the whole run
        return {"error": f"cannot read: {type(e).__name__}: {' '.join(str(e).split())[:200]}"}
    tracks = [t for t in read.score.tracks if t.note_num() > 0]
    programs = sorted({-1 if t.is_drum else int(t.program) for t in tracks})
    return {"hash": digest, "programs": programs, "bars": read.bars, "trimmed": read.trimmed_bars,
            "rebarred": read.rebarred, "meter": "/".join(map(str, read.meter)) if read.meter else ""}


def _cache_path(cache_dir: Path, digest: str) -> Path:
    return cache_dir / digest[:2] / f"{digest}.npz"


def _tokenize(job: tuple[SourceItem, str, str]) -> dict:
    """Tokenize one file (or load it from the cache). Never raises."""
    import symusic

    item, digest, cache_dir = job
    cpath = _cache_path(Path(cache_dir), digest)
    if cpath.exists():
        try:
            with np.load(cpath, allow_pickle=False) as z:
                return {k: z[k] for k in ("ids", "bar_starts", "rhythm", "polyphony")} | {"cached": True}
        except Exception:  # noqa: BLE001 - a damaged cache entry is rebuilt
            pass
    try:
        score = read_midi(Path(item.path), _LIMITS, item.name).score
        song = T.encode_score(score, _TOKENIZER, _TABLES)
    except MidiRejected as e:  # the file changed since it was inspected
        return {"error": e.reason}
    except Exception as e:  # noqa: BLE001
        return {"error": f"tokenizer failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}"}
    if len(song.bar_starts) == 0 or len(song.ids) == 0:
        return {"error": "no notes in the tokenizer's pitch range"}
    out = {"ids": song.ids, "bar_starts": song.bar_starts, "rhythm": song.rhythm,
           "polyphony": song.polyphony}
    tmp = None
    try:  # the cache only saves time: a full disk here is reported when DATA_DIR is written
        cpath.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cpath.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **out)
        os.replace(tmp, cpath)
    except OSError:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
    return out | {"cached": False}


def _run_pool(fn, jobs: list, workers: int, desc: str, progress: bool,
              limits: Limits = DEFAULT_LIMITS) -> list:
    """Map ``fn`` over ``jobs`` on ``workers`` processes with one progress bar; keeps order."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="file", disable=not progress, leave=False)
    results: list = [None] * len(jobs)
    if workers <= 1 or len(jobs) < 8:
        _init_worker(limits)
        for i, job in enumerate(jobs):
            results[i] = fn(job)
            bar.update()
    else:
        # fork: workers inherit the imported modules, so they start in milliseconds
        with get_context("fork").Pool(workers, initializer=_init_worker,
                                      initargs=(limits, True)) as pool:
            chunk = max(1, min(16, len(jobs) // (workers * 8)))
            for i, res in pool.imap_unordered(_indexed(fn), enumerate(jobs), chunksize=chunk):
                results[i] = res
                bar.update()
    bar.close()
    return results


class _indexed:
    """Picklable wrapper: (i, job) -> (i, fn(job))."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, ij):
        return ij[0], self.fn(ij[1])


# ----------------------------------------------------------------------------- prepare


def prepare(
    sources: list[str] | str,
    out: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    genres: list[str] | None = None,
    programs: list[int] | None = None,
    per_genre: int | None = None,
    seed: int = 0,
    max_files: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    max_bars: int = DEFAULT_LIMITS.max_bars,
    meter: str = DEFAULT_LIMITS.meter,
) -> dict:
    """Build a DATA_DIR from MIDI sources; return the report (also written to report.json).

    Raises ``UserError`` for bad input (missing source, malformed labels, a genre that matches
    nothing, ...). Corrupt, empty, too long or unreadable files are skipped and listed in the
    report with the MIDI reader's reason. One ``prepare`` at a time may write a DATA_DIR (a
    second one is refused); a run that fails or is interrupted leaves the previous DATA_DIR
    (or, for a new one, nothing) behind.
    """
    if isinstance(sources, str):
        sources = [sources]
    if not sources:
        raise UserError("no source given")
    if not all(isinstance(x, str) and x for x in sources):
        raise UserError("SOURCE must be a folder, lakh:PATH or music21:NAME")
    for p in programs or []:
        V.integer("program", p, 0, 127)
    V.integer("per_genre", per_genre, 1, 10**9, allow_none=True)
    V.integer("max_files", max_files, 1, 10**9, allow_none=True)
    V.integer("seed", seed, 0, 2**63 - 1)
    V.integer("workers", workers, 1, 1024, allow_none=True)
    limits = Limits(max_bars=V.integer("max_bars", max_bars, 1, 100_000), meter=meter)
    workers = workers or os.cpu_count() or 1
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")

    label_map = read_labels(labels) if labels else None
    items: list[SourceItem] = []
    for spec in sources:
        items.extend(list_source(spec, label_map))

    try:  # atomic: of two runs racing to create it, exactly one "created" it
        out.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    except OSError as e:
        raise UserError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
    V.out_dir(out)
    try:
        with FolderLock(out, "prepare"):
            _clean_stale(out)
            report = _prepare_locked(items, sources, out, genres, programs, per_genre, seed,
                                     max_files, workers, progress, limits)
    except BaseException:
        if created:  # a new DATA_DIR that did not come about: leave nothing behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    return report


def _clean_stale(out: Path) -> None:
    """Remove what killed runs left: staging folders and temporary files (under the lock)."""
    for stage in out.glob(".staging-*"):
        shutil.rmtree(stage, ignore_errors=True)
    (out / ".meta.json.tmp").unlink(missing_ok=True)
    if (out / "cache").is_dir():
        for tmp in (out / "cache").rglob("*.tmp"):
            tmp.unlink(missing_ok=True)


def _prepare_locked(items, sources, out: Path, genres, programs, per_genre, seed, max_files,
                    workers, progress, limits: Limits) -> dict:
    report: dict = {"sources": sources, "found": len(items)}

    # genre filter: needs only the listing
    if genres:
        wanted = {g.lower() for g in genres}
        found = sorted({i.genre for i in items if i.genre})
        if not found:
            raise UserError("--genre needs genre labels: pass --labels FILE (no song has a genre)")
        kept = [i for i in items if i.genre and i.genre.lower() in wanted]
        if not kept:
            raise UserError(
                f"--genre {', '.join(genres)} matches no song; genres found: {', '.join(found)}"
            )
        report["filtered_genre"] = len(items) - len(kept)
        items = kept
    if max_files is not None and len(items) > max_files:
        report["filtered_max_files"] = len(items) - max_files
        items = sorted(random.Random(seed).sample(items, max_files), key=lambda i: (i.source, i.rel))

    cache_dir = out / "cache" / cache_key(limits)
    skipped: list[dict] = []

    info = _run_pool(_inspect, items, workers, "inspect", progress, limits)
    alive = []
    too_long = 0
    for item, res in zip(items, info):
        if "error" in res:
            skipped.append({"path": item.name, "reason": res["error"]})
            too_long += bool(res.get("too_long"))
        else:
            alive.append((item, res))
    report["length_filter"] = {"max_bars": limits.max_bars, "skipped_too_long": too_long}

    if programs:
        want = set(programs)
        kept = [(i, r) for i, r in alive if want & set(r["programs"])]
        report["filtered_program"] = len(alive) - len(kept)
        alive = kept

    if per_genre is not None:
        by_genre: dict[str, list[str]] = defaultdict(list)
        for item, _ in alive:
            g = item.genre or UNKNOWN_GENRE
            if item.song not in by_genre[g]:
                by_genre[g].append(item.song)
        rng = random.Random(seed)
        chosen = set()
        for g in sorted(by_genre):
            songs = sorted(by_genre[g])
            chosen.update(rng.sample(songs, min(per_genre, len(songs))))
        kept = [(i, r) for i, r in alive if i.song in chosen]
        report["filtered_per_genre"] = len(alive) - len(kept)
        alive = kept

    jobs = [(item, res["hash"], str(cache_dir)) for item, res in alive]
    encoded = _run_pool(_tokenize, jobs, workers, "tokenize", progress, limits)
    songs = []
    for (item, res), enc in zip(alive, encoded):
        if "error" in enc:
            skipped.append({"path": item.name, "reason": enc["error"]})
        else:
            songs.append((item, res, enc))
    report["empty_bars"] = {
        "max_empty_bars": limits.max_empty_bars,
        "songs_trimmed": sum(1 for _, r, _ in songs if r["trimmed"]),
        "bars_removed": int(sum(r["trimmed"] for _, r, _ in songs)),
    }
    rebarred = Counter(r["rebarred"] for _, r, _ in songs if r["rebarred"])
    report["meter"] = {
        "mode": limits.meter,
        "rebarred": dict(sorted(rebarred.items())),
        "rebarred_to": dict(sorted(Counter(r["meter"] for _, r, _ in songs if r["rebarred"]).items())),
        "kept_as_declared": len(songs) - sum(rebarred.values()),
    }
    report["skipped"] = skipped
    report["kept"] = len(songs)
    report["reused_from_cache"] = sum(1 for *_, e in songs if e.get("cached"))
    if not songs:
        raise UserError(
            "no song left to keep"
            + (f" ({len(skipped)} skipped: first was {skipped[0]['path']}: {skipped[0]['reason']})"
               if skipped else " after filtering")
        )

    _write_data_dir(out, songs, report, progress, limits)
    return report


# ----------------------------------------------------------------------------- writing


def _write_data_dir(out: Path, songs: list, report: dict, progress: bool,
                    limits: Limits = DEFAULT_LIMITS) -> None:
    tokenizer = T.make_tokenizer()
    tables = T.Vocab(tokenizer)
    by_split: dict[str, list] = {s: [] for s in SPLITS}
    for item, res, enc in songs:
        by_split[split_of(res["hash"])].append((item, res, enc))
    for s in SPLITS:
        by_split[s].sort(key=lambda x: (x[0].source, x[0].rel))

    train = by_split["train"] or [x for s in SPLITS for x in by_split[s]]
    report["bar_lengths"] = bar_length_stats([(e["ids"], e["bar_starts"]) for *_, e in songs],
                                             tables)
    meters = T.meter_counts([(e["ids"], e["bar_starts"]) for *_, e in train], tables)
    edges = {
        "rhythm": T.attribute_edges(np.concatenate([e["rhythm"] for *_, e in train])),
        "polyphony": T.attribute_edges(np.concatenate([e["polyphony"] for *_, e in train])),
    }

    genres = [UNKNOWN_GENRE] + sorted({i.genre for i, *_ in songs if i.genre} - {UNKNOWN_GENRE})
    genre_index = {g: k for k, g in enumerate(genres)}

    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        tokenizer.save(stage / "tokenizer.json")
        manifest_rows = []
        report["splits"] = {}
        for s in SPLITS:
            ids_list, starts_list, rhythm, poly, genre_ids = [], [], [], [], []
            for item, res, enc in by_split[s]:
                ids, starts = enc["ids"], enc["bar_starts"]
                ids_list.append(np.asarray(ids, dtype=np.int32))
                starts_list.append(np.asarray(starts, dtype=np.int32))
                rhythm.append(T.attribute_classes(enc["rhythm"], edges["rhythm"]))
                poly.append(T.attribute_classes(enc["polyphony"], edges["polyphony"]))
                genre_ids.append(genre_index[item.genre or UNKNOWN_GENRE])
                manifest_rows.append({
                    "source": item.source, "path": item.rel, "file": os.path.abspath(item.path),
                    "hash": res["hash"], "genre": item.genre or "",
                    "programs": " ".join(map(str, res["programs"])), "split": s,
                    "tokens": len(ids), "bars": len(starts),
                })
            _save_split(stage / s, ids_list, starts_list, rhythm, poly, genre_ids)
            report["splits"][s] = {
                "songs": len(ids_list),
                "tokens": int(sum(len(x) for x in ids_list)),
                "bars": int(sum(len(x) for x in starts_list)),
            }
        with open(stage / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(manifest_rows[0]))
            w.writeheader()
            w.writerows(manifest_rows)
        (stage / "attributes.json").write_text(json.dumps(
            {"classes": T.NUM_CLASSES, "edges": edges,
             "definition": {"rhythm": "share of sub-beats (4 per beat) with an onset",
                            "polyphony": "mean notes sounding at an onset"}}, indent=2))
        (stage / "report.json").write_text(json.dumps(report, indent=2))
        meta = {
            "format_version": FORMAT_VERSION,
            "vocab_size": len(tokenizer.vocab),
            "genres": genres,
            "attribute_classes": T.NUM_CLASSES,
            "pad_id": int(tokenizer.pad_token_id),
            "splits": report["splits"],
            "meter": limits.meter,  # how the MIDI reader re-bars songs (generation reads alike)
            "meters": meters,  # bars of each meter in the train split, most common first
        }

        # swap in: invalidate first, move, then validate with meta.json last
        (out / "meta.json").unlink(missing_ok=True)
        for entry in stage.iterdir():
            target = out / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
        tmp = out / ".meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, out / "meta.json")
    except (KeyboardInterrupt, SystemExit, UserError):
        raise
    except BaseException as e:  # noqa: BLE001 - numpy reports a full disk without an errno
        raise write_failure(out, e) from e
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _save_split(folder: Path, ids_list, starts_list, rhythm, poly, genre_ids) -> None:
    """One flat array per field plus offsets: loads with mmap, no pickle."""
    folder.mkdir(parents=True)

    def offsets(parts):
        return np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    np.save(folder / "tokens.npy", cat(ids_list, np.int32))
    np.save(folder / "token_offsets.npy", offsets(ids_list))
    np.save(folder / "bar_starts.npy", cat(starts_list, np.int32))
    np.save(folder / "bar_offsets.npy", offsets(starts_list))
    np.save(folder / "rhythm.npy", cat(rhythm, np.uint8))
    np.save(folder / "polyphony.npy", cat(poly, np.uint8))
    np.save(folder / "genre.npy", np.asarray(genre_ids, dtype=np.int16))


def bar_length_stats(songs, tables: T.Vocab) -> dict:
    """Songs whose bars are mostly one beat long (or less), and bars per meter length."""
    one_beat_songs = 0
    for ids, starts in songs:
        lengths = T.bar_lengths_in_beats(ids, starts, tables)
        one_beat_songs += bool(len(lengths)) and float(np.mean(lengths <= 1)) > 0.5
    return {"songs": len(songs), "songs_with_one_beat_bars": int(one_beat_songs),
            "share_one_beat": one_beat_songs / max(len(songs), 1)}


def summarize(report: dict) -> str:
    """A few human-readable lines about a prepare run."""
    lines = [f"found {report['found']} files, kept {report['kept']}"]
    for key in ("filtered_genre", "filtered_program", "filtered_per_genre", "filtered_max_files"):
        if report.get(key):
            lines.append(f"  {key.replace('_', ' ')}: {report[key]}")
    if report.get("skipped"):
        lines.append(f"  skipped {len(report['skipped'])}:")
        reasons = Counter(re.sub(r"\d+", "N", s["reason"].split(":")[0]) for s in report["skipped"])
        lines += [f"    {n} × {r}" for r, n in reasons.most_common()]
    eb = report.get("empty_bars", {})
    if eb.get("songs_trimmed"):
        lines.append(f"  trimmed {eb['bars_removed']} silent bars from {eb['songs_trimmed']} songs "
                     f"(runs of more than {eb['max_empty_bars']} empty bars, leading silence)")
    mt = report.get("meter", {})
    if mt.get("rebarred"):
        why = ", ".join(f"{n} × {r}" for r, n in mt["rebarred"].items())
        to = ", ".join(f"{n} in {m}" for m, n in mt["rebarred_to"].items())
        lines.append(f"  re-barred {sum(mt['rebarred'].values())} songs ({why}): {to}")
    for s, d in report.get("splits", {}).items():
        lines.append(f"  {s:5s}: {d['songs']:6d} songs {d['tokens']:10d} tokens {d['bars']:8d} bars")
    return "\n".join(lines)
