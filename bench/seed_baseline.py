"""The original study's Compressive Transformer, reproduced and trained as a baseline.

Faithful to the study (see ../shared/SEED-BASELINE.md): music21 tokens (pitch names and chord
normal orders, no durations; ``seed_pipeline.music21_tokens``), an integer vocabulary over the
train tokens plus ``<unk>`` for tokens seen only in evaluation files,
``CompressiveTransformer(dim=64, depth=6, seq_len=64, mem_len=64, cmem_len=256, cmem_ratio=4,
memory_layers=[5, 6], dropouts 0.1)`` in its ``AutoregressiveWrapper``, Adam, random 65-token
windows (64 inputs + shifted targets) of the concatenated train tokens, one backward of
``loss + aux_loss`` per 64-token segment and one optimizer step per batch.

It trains for a wall-clock budget on mtvae's train split (a seeded sample of ``--max-train-files``
rows of DATA_DIR/manifest.csv with split == train), validates on ``--eval-split`` files (mean
cross-entropy in nats/token over non-overlapping windows of the concatenated evaluation tokens,
next to add-one unigram and bigram count models fitted on the train tokens and scored on the same
targets), then samples pieces (a 64-token prime from an evaluation file, ``generate`` with the
library's default top-k filter, temperature 1.0) and writes them as MIDI with the study's fixed
note length: every token one quarter note, one after another; a pitch name is one note, a chord
token its pitch classes from C4; velocity 80, one piano track.

music21 parsing is slow, so token lists are cached per file (key: path, size, mtime) under
``--cache`` and parsed by a pool of ``--workers`` processes.

Outputs in ``--out``: metrics.csv, samples/sample_XX.mid (+ samples/tokens.json), model.pt,
summary.json; a Markdown summary table goes to stdout.

    .venv/bin/python bench/seed_baseline.py [--data data/pn] [--minutes 30] [--max-steps N]
        [--max-train-files 300] [--max-eval-files 30] [--window 65] [--out runs/seed-baseline]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import inspect
import json
import math
import os
import platform
import random
import sys
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_pipeline import music21_tokens, tokens_to_notes  # noqa: E402

UNK = "<unk>"
TPQ = 480
VELOCITY = 80
# the study's model; num_tokens is the vocabulary size
STUDY_MODEL = dict(dim=64, depth=6, seq_len=64, mem_len=64, cmem_len=256, cmem_ratio=4,
                   memory_layers=[5, 6], attn_dropout=0.1, ff_dropout=0.1, attn_layer_dropout=0.1)
METRIC_FIELDS = ["step", "train_s", "train_loss", "aux_loss", "aux_loss_max", "val_loss",
                 "val_loss_known", "tokens_per_s"]


def default_cache() -> str:
    base = os.environ.get("MTVAE_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "mtvae"
    return str(root / "seed_baseline")


# ---------------------------------------------------------------------------- files
def manifest_files(data: str, split: str) -> tuple[list[str], dict[str, int]]:
    """MIDI paths of one split of DATA_DIR/manifest.csv, and their mtvae (REMI) token counts."""
    path = Path(data) / "manifest.csv"
    if not path.exists():
        sys.exit(f"no manifest.csv in {data}; prepare it first: .venv/bin/mtvae prepare ... "
                 f"--out {data}")
    files, remi = [], {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] != split:
                continue
            p = Path(row["file"])
            if not p.is_absolute() and not p.exists():
                p = Path(row["source"]) / row["path"]
            files.append(str(p))
            remi[str(p)] = int(row["tokens"] or 0)
    return files, remi


def sample_files(files: list[str], n: int, seed: int) -> list[str]:
    """A seeded random sample of n files (all when n <= 0), kept in manifest order."""
    if 0 < n < len(files):
        keep = set(random.Random(seed).sample(range(len(files)), n))
        files = [f for i, f in enumerate(files) if i in keep]
    return files


def cache_file(cache: Path, path: str) -> Path:
    st = os.stat(path)
    key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
    return cache / f"{hashlib.sha1(key.encode()).hexdigest()}.json"


def _parse(path: str) -> tuple[str, list[str] | None, str | None, float]:
    t0 = time.perf_counter()
    try:
        return path, music21_tokens(path), None, time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 - a file music21 cannot read is skipped, not fatal
        return path, None, f"{type(e).__name__}: {e}", time.perf_counter() - t0


def load_tokens(paths: list[str], cache: Path, workers: int) -> tuple[dict, dict, dict]:
    """music21 tokens per file (cached); returns tokens, errors and parse statistics."""
    cache.mkdir(parents=True, exist_ok=True)
    tokens: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    todo = []
    for p in dict.fromkeys(paths):
        try:
            c = cache_file(cache, p)
        except OSError as e:
            errors[p] = f"{type(e).__name__}: {e}"
            continue
        try:
            entry = json.loads(c.read_text())
        except (OSError, ValueError):
            todo.append(p)
            continue
        if "error" in entry:
            errors[p] = entry["error"]
        else:
            tokens[p] = entry["tokens"]
    cached = len(paths) - len(todo)
    t0 = time.perf_counter()
    cpu_s = 0.0
    if todo:
        print(f"music21: parsing {len(todo)} files with {workers} workers "
              f"({cached} cached) ...", file=sys.stderr, flush=True)
        if workers > 1 and len(todo) > 1:
            pool = Pool(min(workers, len(todo)))
            results = pool.imap_unordered(_parse, todo)
        else:
            pool, results = None, map(_parse, todo)
        try:
            for path, toks, err, dt in results:
                cpu_s += dt
                entry = {"path": path, "error": err} if err else {"path": path, "tokens": toks}
                if err:
                    errors[path] = err
                else:
                    tokens[path] = toks
                c = cache_file(cache, path)
                tmp = c.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(entry))
                tmp.replace(c)
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    wall = time.perf_counter() - t0
    stats = {"files": len(paths), "cached": cached, "parsed": len(todo), "failed": len(errors),
             "parse_wall_s": wall, "parse_s_per_file": cpu_s / len(todo) if todo else None}
    return tokens, errors, stats


# ---------------------------------------------------------------------------- model
def build_model(vocab_size: int):
    """The study's model in its AutoregressiveWrapper; only arguments the library accepts."""
    from compressive_transformer_pytorch import AutoregressiveWrapper, CompressiveTransformer

    accepted = inspect.signature(CompressiveTransformer.__init__).parameters
    kwargs = {k: v for k, v in STUDY_MODEL.items() if k in accepted}
    dropped = sorted(set(STUDY_MODEL) - set(kwargs))
    if dropped:
        print(f"warning: the library does not accept {dropped}; left out", file=sys.stderr)
    net = CompressiveTransformer(num_tokens=vocab_size, **kwargs)
    return AutoregressiveWrapper(net), kwargs, dropped


def model_ce(model, windows, batch_size: int, unk: int = 0) -> tuple[float, float]:
    """Mean cross-entropy (nats/token) of the model on [N, W] windows: over all targets, and
    over targets that are not ``<unk>``.

    The same computation as ``AutoregressiveWrapper(x, return_loss=True)`` (64-token segments,
    memory carried from segment to segment within a window), done here per target so both
    means come from one pass.
    """
    import torch
    import torch.nn.functional as F

    model.eval()
    total = known = 0.0
    n_total = n_known = 0
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            x = windows[i:i + batch_size]
            mem = None
            for xi, xo in zip(x[:, :-1].split(model.seq_len, dim=1),
                              x[:, 1:].split(model.seq_len, dim=1)):
                logits, mem, _ = model.net(xi, memories=mem)
                nll = F.cross_entropy(logits.transpose(1, 2), xo, reduction="none")
                keep = xo != unk
                total += nll.sum().item()
                n_total += nll.numel()
                known += nll[keep].sum().item()
                n_known += int(keep.sum())
    model.train()
    return total / n_total, known / n_known if n_known else float("nan")


def count_model_ces(train_ids, windows, vocab_size: int, unk: int = 0) -> dict[str, float]:
    """Unigram and bigram cross-entropy (add-one smoothing, counts over the train tokens) on the
    targets of the evaluation windows, all and not-``<unk>``; the bigram's context is the token
    before each target."""
    import numpy as np

    tr = train_ids.numpy()
    uni = np.bincount(tr, minlength=vocab_size).astype(np.float64) + 1.0
    log_uni = np.log(uni / uni.sum())
    big = np.ones((vocab_size, vocab_size))
    np.add.at(big, (tr[:-1], tr[1:]), 1.0)
    log_big = np.log(big / big.sum(axis=1, keepdims=True))
    w = windows.numpy()
    prev, tgt = w[:, :-1].ravel(), w[:, 1:].ravel()
    keep = tgt != unk
    uni_nll, big_nll = -log_uni[tgt], -log_big[prev, tgt]
    return {"unigram": float(uni_nll.mean()), "bigram": float(big_nll.mean()),
            "unigram_known": float(uni_nll[keep].mean()) if keep.any() else float("nan"),
            "bigram_known": float(big_nll[keep].mean()) if keep.any() else float("nan")}


def eval_windows(stream, window: int, limit: int):
    """Non-overlapping windows of the evaluation stream, evenly spaced when there are more than
    ``limit``."""
    import torch

    n = len(stream) // window
    if n == 0:
        sys.exit(f"evaluation files have {len(stream)} tokens, fewer than one "
                 f"{window}-token window")
    picks = range(n) if limit <= 0 or n <= limit else [(j * n) // limit for j in range(limit)]
    return torch.stack([stream[i * window:(i + 1) * window] for i in picks])


def top_k(logits, thres: float = 0.9):
    """The library's default top-k filter (keeps int((1 - thres) * V) logits), at least one."""
    import torch

    k = max(1, int((1 - thres) * logits.shape[-1]))
    val, ind = torch.topk(logits, k)
    out = torch.full_like(logits, float("-inf"))
    out.scatter_(1, ind, val)
    return out


# ---------------------------------------------------------------------------- samples
def write_midi(tokens: list[str], path: Path) -> dict:
    """The study's decoding: every token one quarter note after the previous; <unk> skipped."""
    import symusic

    score = symusic.Score(TPQ)
    score.tempos.append(symusic.Tempo(0, 120.0))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("piano", 0, False)
    t = skipped = 0
    for pitches in tokens_to_notes(tokens):
        if not pitches:
            skipped += 1
            continue
        for p in pitches:
            track.notes.append(symusic.Note(t, TPQ, p, VELOCITY))
        t += TPQ
    score.tracks.append(track)
    score.dump_midi(str(path))
    return {"notes": len(track.notes), "onsets": t // TPQ, "skipped_tokens": skipped}


# ---------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/pn")
    ap.add_argument("--eval-split", default="valid")
    ap.add_argument("--max-train-files", type=int, default=300, help="0: all")
    ap.add_argument("--max-eval-files", type=int, default=30, help="0: all")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", default=default_cache())
    ap.add_argument("--minutes", type=float, default=30.0, help="training wall time")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--window", type=int, default=65,
                    help="tokens per training window (inputs + 1); 64k+1 carries memory k-1 times")
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--val-windows", type=int, default=200)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--sample-tokens", type=int, default=256)
    ap.add_argument("--filter-thres", type=float, default=0.9,
                    help="the library's top-k threshold: keeps (1 - thres) of the vocabulary")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 2 on a busy 2-core machine was 40x slower than 1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/seed-baseline")
    args = ap.parse_args()
    if args.window < 2:
        sys.exit("--window must be at least 2")
    t_start = time.perf_counter()
    load = os.getloadavg()

    # -- files and tokens (before torch: the pool forks a process without torch's threads)
    train_all, remi = manifest_files(args.data, "train")
    eval_all, _ = manifest_files(args.data, args.eval_split)
    train_files = sample_files(train_all, args.max_train_files, args.seed)
    eval_files = sample_files(eval_all, args.max_eval_files, args.seed)
    if not train_files or not eval_files:
        sys.exit(f"{args.data}: {len(train_files)} train and {len(eval_files)} "
                 f"{args.eval_split} files; need both")
    tokens, errors, parse = load_tokens(train_files + eval_files, Path(args.cache), args.workers)
    train_files = [f for f in train_files if f in tokens]
    eval_files = [f for f in eval_files if f in tokens]
    if not train_files or not eval_files:
        sys.exit(f"music21 read {len(train_files)} train and {len(eval_files)} eval files; "
                 f"errors: {errors}")

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    itos = [UNK] + sorted({t for f in train_files for t in tokens[f]})
    stoi = {t: i for i, t in enumerate(itos)}
    V = len(itos)
    train_ids = torch.tensor([stoi[t] for f in train_files for t in tokens[f]], dtype=torch.long)
    eval_ids = [torch.tensor([stoi.get(t, 0) for t in tokens[f]], dtype=torch.long)
                for f in eval_files]
    eval_stream = torch.cat(eval_ids)
    eval_unknown = int((eval_stream == 0).sum())
    eval_only_types = len({t for f in eval_files for t in tokens[f]} - set(stoi))
    if len(train_ids) < args.window:
        sys.exit(f"train files have {len(train_ids)} tokens, fewer than one window")

    windows = eval_windows(eval_stream, args.window, args.val_windows)
    counts = count_model_ces(train_ids, windows, V)

    # -- model
    model, model_kwargs, dropped = build_model(V)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    mem_layers = [model.net.attn_layers[i - 1].fn.fn for i in model.net.memory_layers]
    model.train()

    out = Path(args.out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(args.seed)
    targets_per_step = args.batch_size * (args.window - 1)
    budget = args.minutes * 60
    step, train_s, val_s = 0, 0.0, 0.0
    vals: list[tuple[int, float, float]] = []
    aux_all: list[float] = []
    acc = {"loss": [], "aux": [], "s": 0.0, "tokens": 0}
    last_train_loss = None

    def validate() -> dict:
        nonlocal val_s
        t0 = time.perf_counter()
        ce, ce_known = model_ce(model, windows, args.batch_size)
        val_s += time.perf_counter() - t0
        vals.append((step, ce, ce_known))
        return {"val_loss": f"{ce:.5f}", "val_loss_known": f"{ce_known:.5f}"}

    with open(out / "metrics.csv", "w", newline="") as f:
        log = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        log.writeheader()
        log.writerow({"step": 0, "train_s": 0.0, **validate()})
        f.flush()
        while not ((args.max_steps is not None and step >= args.max_steps) or train_s >= budget):
            t0 = time.perf_counter()
            starts = torch.randint(0, len(train_ids) - args.window + 1, (args.batch_size,),
                                   generator=gen)
            x = torch.stack([train_ids[s:s + args.window] for s in starts.tolist()])
            opt.zero_grad(set_to_none=True)
            for loss, aux_loss, _ in model(x, return_loss=True):  # one per 64-token segment
                (loss + aux_loss).backward()
                acc["loss"].append(loss.item())
                acc["aux"].append(aux_loss.item())
            opt.step()
            dt = time.perf_counter() - t0
            train_s += dt
            step += 1
            acc["s"] += dt
            acc["tokens"] += targets_per_step
            done = (args.max_steps is not None and step >= args.max_steps) or train_s >= budget
            val = step % args.val_every == 0 or done
            if val or step % args.log_every == 0:
                aux_all.extend(acc["aux"])
                last_train_loss = sum(acc["loss"]) / len(acc["loss"])
                log.writerow({
                    "step": step, "train_s": f"{train_s:.2f}",
                    "train_loss": f"{last_train_loss:.5f}",
                    "aux_loss": f"{sum(acc['aux']) / len(acc['aux']):.6g}",
                    "aux_loss_max": f"{max(acc['aux']):.6g}",
                    "tokens_per_s": f"{acc['tokens'] / acc['s']:.1f}",
                    **(validate() if val else {})})
                f.flush()
                acc = {"loss": [], "aux": [], "s": 0.0, "tokens": 0}
                if val:
                    print(f"step {step}: train {train_s / 60:.1f} min, val CE {vals[-1][1]:.3f}",
                          file=sys.stderr, flush=True)
    kv_frozen = [not m.to_kv.weight.requires_grad for m in mem_layers]
    torch.save({"state_dict": model.state_dict(), "itos": itos, "model_kwargs": model_kwargs,
                "step": step}, out / "model.pt")

    # -- samples
    t0 = time.perf_counter()
    rng = random.Random(args.seed)
    prime_len = model.seq_len
    sources = [ids for ids in eval_ids if len(ids) >= prime_len] or [eval_stream]
    primes = []
    for _ in range(args.samples):
        src = rng.choice(sources)
        o = rng.randrange(len(src) - prime_len + 1)
        primes.append(src[o:o + prime_len])
    torch.manual_seed(args.seed)
    generated: list[list[int]] = []
    for i in range(0, len(primes), args.batch_size):
        g = model.generate(torch.stack(primes[i:i + args.batch_size]), args.sample_tokens,
                           temperature=1.0, filter_logits_fn=top_k, filter_thres=args.filter_thres)
        generated.extend(g.tolist())
    gen_s = time.perf_counter() - t0
    for old in (out / "samples").glob("sample_*.mid"):
        old.unlink()
    sample_stats, sample_tokens = [], []
    for i, ids in enumerate(generated):
        toks = [itos[j] for j in ids]
        sample_tokens.append(toks)
        sample_stats.append(write_midi(toks, out / "samples" / f"sample_{i:02d}.mid"))
    (out / "samples" / "tokens.json").write_text(json.dumps(sample_tokens))

    # -- summary
    ces = [v[1] for v in vals]
    best_step, best, best_known = min(vals, key=lambda v: v[1])
    n_aux = len(aux_all)
    nonzero = sum(a != 0 for a in aux_all)
    summary = {
        "model": "compressive-transformer-pytorch (the original study's configuration)",
        "model_kwargs": {"num_tokens": V, **model_kwargs}, "kwargs_not_accepted": dropped,
        "parameters": n_params, "vocab_size": V,
        "train_files": len(train_files), "eval_files": len(eval_files),
        "eval_split": args.eval_split, "failed_files": errors,
        "train_tokens": len(train_ids), "eval_tokens": len(eval_stream),
        "remi_tokens_train": sum(remi.get(f, 0) for f in train_files),
        "music21_tokens_per_train_file": len(train_ids) / len(train_files),
        "eval_unknown_tokens": eval_unknown, "eval_unknown_share": eval_unknown / len(eval_stream),
        "eval_only_token_types": eval_only_types,
        "parse": parse,
        "window": args.window, "segments_per_window": math.ceil((args.window - 1) / model.seq_len),
        "steps": step, "train_minutes": train_s / 60, "val_minutes": val_s / 60,
        "tokens_per_s": step * targets_per_step / train_s if train_s else None,
        "last_train_loss": last_train_loss,
        "val_windows": len(windows), "val_targets": int(windows[:, 1:].numel()),
        "val_ce_first": ces[0], "val_ce_best": best, "val_ce_best_step": best_step,
        "val_ce_last": ces[-1], "unigram_ce": counts["unigram"], "bigram_ce": counts["bigram"],
        "known_targets": {"note": "targets that are not <unk>: a count model's add-one "
                                  "probability for <unk> is tiny, the network's is learned",
                          "val_ce_first": vals[0][2], "val_ce_at_best_step": best_known,
                          "val_ce_last": vals[-1][2], "unigram_ce": counts["unigram_known"],
                          "bigram_ce": counts["bigram_known"]},
        "aux_loss": {"segments": n_aux, "nonzero_segments": nonzero, "ever_nonzero": nonzero > 0,
                     "mean": sum(aux_all) / n_aux if n_aux else None,
                     "max": max(aux_all) if n_aux else None},
        "memory_layers_to_kv_frozen": kv_frozen,
        "samples": {"count": len(generated), "prime_tokens": prime_len,
                    "generated_tokens": args.sample_tokens, "temperature": 1.0,
                    "filter": f"top-k, keeps max(1, int({1 - args.filter_thres:.2g} * V)) = "
                              f"{max(1, int((1 - args.filter_thres) * V))}",
                    "note_ticks": TPQ, "ticks_per_quarter": TPQ, "velocity": VELOCITY,
                    "generate_s": gen_s,
                    "notes": sum(s["notes"] for s in sample_stats),
                    "skipped_tokens": sum(s["skipped_tokens"] for s in sample_stats)},
        "wall_minutes": (time.perf_counter() - t_start) / 60,
        "settings": vars(args),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_average_at_start": load},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    rows = [
        ("parameters", f"{n_params:,}"),
        ("vocabulary (incl. <unk>)", f"{V}"),
        ("train / eval files", f"{len(train_files)} / {len(eval_files)} ({args.eval_split})"),
        ("train / eval tokens", f"{len(train_ids):,} / {len(eval_stream):,}"),
        ("eval tokens unknown", f"{eval_unknown:,} ({eval_unknown / len(eval_stream):.2%}, "
                                f"{eval_only_types} types)"),
        ("music21 parse", f"{parse['parsed']} parsed, {parse['cached']} cached, "
                          f"{parse['failed']} failed, {parse['parse_wall_s']:.1f} s"),
        ("window / segments", f"{args.window} / {summary['segments_per_window']}"),
        ("steps / train minutes", f"{step} / {train_s / 60:.2f}"),
        ("tokens/s", f"{summary['tokens_per_s'] or 0:,.0f}"),
        ("val CE first → best → last", f"{ces[0]:.3f} → {best:.3f} (step {best_step}) → "
                                       f"{ces[-1]:.3f}"),
        ("unigram / bigram CE", f"{counts['unigram']:.3f} / {counts['bigram']:.3f}"),
        ("known targets: val CE last, unigram / bigram",
         f"{vals[-1][2]:.3f}, {counts['unigram_known']:.3f} / {counts['bigram_known']:.3f}"),
        ("aux_loss nonzero / max", f"{nonzero}/{n_aux} segments / "
                                   f"{summary['aux_loss']['max'] or 0:.3g}"),
        ("memory layers' to_kv frozen by the library", f"{kv_frozen}"),
        ("samples", f"{len(generated)} × {args.sample_tokens} tokens, "
                    f"{summary['samples']['notes']:,} notes, {gen_s:.1f} s"),
    ]
    print("| figure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print(f"wrote {out}/summary.json, metrics.csv, samples/")


if __name__ == "__main__":
    main()
