"""Generation speed on CPU: mtvae ``small`` with and without its cache vs the library's generate.

Measures autoregressive generation throughput (new tokens x batch / seconds) from one start
token (``Bar_None``) for:

* (a) mtvae ``small``, cached: ``MTVAE.step`` per token (keys/values of the segment so far
  cached, memory and compressed memory carried across segments);
* (b) mtvae ``small``, uncached: every step re-runs the teacher-forced ``MTVAE.decode`` over
  the whole sequence so far (segment by segment, memory rebuilt from scratch) and keeps the
  last logits: O(n^2), so ``--nocache-tokens`` may shorten it (its tokens/s is then that of a
  shorter, cheaper run: the cached / uncached ratio is an underestimate);
* (c) compressive-transformer-pytorch 0.4.0's ``AutoregressiveWrapper.generate`` with the
  study's shape at mtvae's width (seq_len 64, mem_len 64, cmem_len 256, ratio 4, depth 6,
  memory on layers 5 and 6, 4 heads): it has no key/value cache and re-runs the current
  64-token segment at every step, with its memories carried across segments.

Random weights (speed does not depend on them), eval mode, ``torch.inference_mode`` (as mtvae.generate uses; the library too). Every variant
samples the same way: ``torch.multinomial`` on the softmax of the logits, temperature 1, no
top-k/top-p (the library's default top-k filter is replaced by the identity). mtvae's
conditioning is one fixed random vector per sequence. Each variant first generates
``--warmup`` untimed tokens; the global RNG is re-seeded before every timed run; the reported
time is the median over ``--repeats``. Before timing, the cached path is checked against the
uncached one (same tokens, same conditioning) with ``torch.allclose``.

    .venv/bin/python bench/generate_speed.py [--data data/pn] [--tokens 1024]
        [--batch-sizes 1,8] [--nocache-tokens 1024] [--repeats 1] [--warmup 16]
        [--threads 2] [--json bench/results/generate_speed.json]

**As users call it** (``--run RUN_DIR``, a trained run; its DATA_DIR's first test song of 24
bars or more is the prompt): ``MusicVAE.sample`` (16 bars, n = each batch size),
``continue_`` (8 bars after the song's first 16) and ``infill`` (bars 9-12 of its first 24),
timed from call to Score with the run's defaults (learnt prior, guidance 0.5), beside the bare
cached step of the same model at batch 1 and 2 (the guided batch) in the same process. New
tokens are counted as ``generate`` writes them; seconds of music are those of the new tokens
decoded alone (their tempo, 120 bpm without one). Peak RSS is the process's.

    OMP_NUM_THREADS=1 .venv/bin/python bench/generate_speed.py --run RUN_DIR --threads 1 \
        [--batch-sizes 1,8] [--json bench/results/generate_calls.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

TARGET_RATIO = 5.0  # mtvae cached tokens/s over uncached, and over the library's generate
CHECK_ATOL, CHECK_RTOL = 1e-5, 1e-4  # random-weight logits are ~0.3: float32 noise is ~1e-6
LIB_KW = dict(dim=256, depth=6, seq_len=64, mem_len=64, cmem_len=256, cmem_ratio=4,
              memory_layers=[5, 6], heads=4)


def load_setup(data_dir: str):
    """(model config, start token id, where they came from)."""
    from mtvae.config import model_config

    try:
        from mtvae.data import DataDir

        meta = DataDir(data_dir).meta
        vocab, n_genres, pad, src = (meta["vocab_size"], len(meta["genres"]), meta["pad_id"],
                                     f"{data_dir}/meta.json")
    except Exception:  # no prepared data: the base REMI+ vocabulary's numbers
        vocab, n_genres, pad, src = 518, 1, 0, "defaults (no prepared data)"
    try:
        from mtvae.data.tokens import make_tokenizer

        start = make_tokenizer().vocab["Bar_None"]
    except Exception:
        start = 4  # Bar_None in the project's REMI+ vocabulary
    cfg = model_config("small", vocab_size=vocab, n_genres=n_genres, pad_id=pad)
    return cfg, start, src


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sample(logits: torch.Tensor) -> torch.Tensor:
    """[B, V] -> [B]: the sampling every variant uses."""
    return torch.multinomial(F.softmax(logits.float(), dim=-1), 1)[:, 0]


def no_filter(logits, thres=None):  # replaces the library's default top-k filter
    return logits


# ---------------------------------------------------------------------------- variants
def gen_cached(model, start: torch.Tensor, cond: torch.Tensor, n: int) -> torch.Tensor:
    state = model.decoder.start(model.decoder.empty_memory(start.shape[0], "cpu"))
    tok, out = start, []
    for _ in range(n):
        logits, state = model.step(tok, cond, state)
        tok = sample(logits)
        out.append(tok)
    return torch.stack(out, dim=1)


def gen_uncached(model, start: torch.Tensor, cond: torch.Tensor, n: int) -> torch.Tensor:
    seq = start[:, None]
    for _ in range(n):
        cond_tok = cond[:, None].expand(-1, seq.shape[1], -1)
        logits = model.decode(seq, cond_tok)[0][:, -1]
        seq = torch.cat([seq, sample(logits)[:, None]], dim=1)
    return seq[:, 1:]


def gen_library(wrapper, start: torch.Tensor, n: int) -> torch.Tensor:
    return wrapper.generate(start[:, None], n, temperature=1.0, filter_logits_fn=no_filter)


# ---------------------------------------------------------------------------- check
def check_cache(model, start_id: int, seed: int, n_steps: int) -> dict:
    """Cached step logits against the uncached path, on the same tokens and conditioning.

    Prefix check: for the first ``n_steps`` steps, ``decode(tokens[:t+1])[:, -1]`` exactly as
    variant (b) computes it. Long check: one teacher-forced ``decode`` of 3 segments + 8
    tokens (past a segment boundary and the first compression) against stepping through it.
    """
    torch.manual_seed(seed)
    B, S = 2, model.cfg.seg_len
    n_long = 3 * S + 8
    tok = torch.randint(1, model.cfg.vocab_size, (B, n_long))
    tok[:, 0] = start_id
    cond = torch.randn(B, model.d_cond)
    cond_tok = cond[:, None].expand(-1, n_long, -1)
    state = model.decoder.start(model.decoder.empty_memory(B, "cpu"))
    cached = []
    for t in range(n_long):
        logits, state = model.step(tok[:, t], cond, state)
        cached.append(logits)
    cached = torch.stack(cached, dim=1)
    prefix_ok, prefix_exact, prefix_diff = True, True, 0.0
    for t in range(n_steps):
        u = model.decode(tok[:, :t + 1], cond_tok[:, :t + 1])[0][:, -1]
        prefix_ok &= torch.allclose(cached[:, t], u, atol=CHECK_ATOL, rtol=CHECK_RTOL)
        prefix_exact &= torch.allclose(cached[:, t], u)
        prefix_diff = max(prefix_diff, float((cached[:, t] - u).abs().max()))
    full = model.decode(tok, cond_tok)[0]
    return {"prefix_steps": n_steps, "prefix_allclose": bool(prefix_ok),
            "prefix_allclose_default_tol": bool(prefix_exact), "prefix_max_abs_diff": prefix_diff,
            "long_tokens": n_long,
            "long_allclose": torch.allclose(cached, full, atol=CHECK_ATOL, rtol=CHECK_RTOL),
            "long_max_abs_diff": float((cached - full).abs().max()),
            "atol": CHECK_ATOL, "rtol": CHECK_RTOL, "logit_std": float(full.std())}


# ---------------------------------------------------------------------------- timing
def measure(fn, batch: int, n: int, args) -> dict:
    torch.manual_seed(args.seed + 1)
    fn(min(args.warmup, n))  # untimed warm-up
    times = []
    for _ in range(args.repeats):
        torch.manual_seed(args.seed + 2)
        t0 = time.perf_counter()
        out = fn(n)
        times.append(time.perf_counter() - t0)
        assert out.shape == (batch, n), f"generated {tuple(out.shape)}, expected {(batch, n)}"
    sec = statistics.median(times)
    return {"batch": batch, "new_tokens": n, "seconds": sec, "tokens_per_s": n * batch / sec,
            "seconds_all": times}


def time_calls(args) -> None:
    """The three calls users wait on, end to end, beside the bare step (see the module doc)."""
    import resource

    from mtvae import MusicVAE, Sampling
    from mtvae.data import DataDir

    torch.set_num_threads(args.threads)
    m = MusicVAE.load(args.run)
    data = DataDir(m.config.data["data_dir"])
    song = next((p for p in data.files("test") if len(m.read(p).bar_starts) >= 24), None)
    if song is None:
        raise SystemExit(f"{data}: no test song of 24 bars or more for the prompt")
    prompt = m.tokenizer.decode(m.read(song).first_bars(16).ids.tolist())
    written: list[list[int]] = []
    generate = m.generate

    def spy(plans, sampling, *a, **k):
        outs = generate(plans, sampling, *a, **k)
        written.extend(outs)
        return outs

    m.generate = spy

    def music_seconds(ids: list[int]) -> float:
        return float(m.tokenizer.decode(ids).to("second").end())

    def bare(batch: int, n: int = 256) -> dict:
        cond = torch.randn(batch, m.model.d_cond)
        tok = torch.full((batch,), m.grammar.bar_id)
        with torch.inference_mode():
            state = m.model.decoder.start(m.model.decoder.empty_memory(batch, "cpu"))
            for _ in range(args.warmup):
                _, state = m.model.step(tok, cond, state)
            t0 = time.perf_counter()
            for _ in range(n):
                logits, state = m.model.step(tok, cond, state)
                tok = sample(logits)
        sec = time.perf_counter() - t0
        return {"call": f"bare step, batch {batch}", "batch": batch, "new_tokens": n * batch,
                "seconds": sec, "tokens_per_s": n * batch / sec, "music_seconds": None,
                "x_real_time": None}

    calls = [(f"sample 16 bars, n {b}", b, lambda b=b: m.sample(bars=16, n=b, seed=0))
             for b in args.batch_sizes_list]
    calls += [("continue 8 bars after 16", 1, lambda: m.continue_(prompt, bars=8, seed=0)),
              ("infill bars 9-12 of 24", 1, lambda: m.infill(
                  m.tokenizer.decode(m.read(song).first_bars(24).ids.tolist()), "9-12", seed=0))]
    m.sample(bars=1, seed=0)  # warm-up
    rows = [bare(1), bare(2)]
    for name, batch, fn in calls:
        written.clear()
        t0 = time.perf_counter()
        fn()
        sec = time.perf_counter() - t0
        n = sum(len(o) for o in written)
        music = sum(music_seconds(o) for o in written)
        rows.append({"call": name, "batch": batch, "new_tokens": n, "seconds": sec,
                     "tokens_per_s": n / sec, "music_seconds": music, "x_real_time": music / sec})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    guidance = Sampling().resolved().guidance
    print(f"{args.run} ({m.model.num_parameters():,} parameters), {args.threads} thread(s), "
          f"prior {'learnt' if m.prior is not None else 'N(0, I)'}, guidance {guidance}; "
          f"prompt {song.name}\n")
    print("| call | batch | new tokens | seconds | tokens/s | seconds of music | x real time |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        music = "" if r["music_seconds"] is None else f"{r['music_seconds']:.1f}"
        xrt = "" if r["x_real_time"] is None else f"{r['x_real_time']:.2f}"
        print(f"| {r['call']} | {r['batch']} | {r['new_tokens']:,} | {r['seconds']:.2f} | "
              f"{r['tokens_per_s']:,.0f} | {music} | {xrt} |")
    print(f"\npeak RSS {peak:,.0f} MiB; target: at least 20x real time at batch 1 on one core "
          "with the default guidance")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "settings": {k: v for k, v in vars(args).items() if k != "json"}, "rows": rows,
        "peak_rss_mib": peak, "guidance": guidance, "prompt": str(song),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_average_at_start": os.getloadavg()},
    }, indent=2, default=str))
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", metavar="RUN_DIR",
                    help="time sample, continue and infill of this trained run as users call "
                         "them (instead of the bare steps against the library)")
    ap.add_argument("--data", default="data/pn")
    ap.add_argument("--tokens", type=int, default=1024, help="new tokens per sequence")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--nocache-tokens", type=int, default=1024,
                    help="new tokens for the uncached variant (capped at --tokens)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=16, help="untimed tokens before timing")
    ap.add_argument("--check-steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json",
                    default=str(Path(__file__).parent / "results" / "generate_speed.json"))
    args = ap.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    if args.run:
        args.batch_sizes_list = batch_sizes
        if args.json.endswith("generate_speed.json"):
            args.json = str(Path(args.json).with_name("generate_calls.json"))
        return time_calls(args)
    n_nocache = min(args.nocache_tokens, args.tokens)

    from compressive_transformer_pytorch import AutoregressiveWrapper, CompressiveTransformer
    from mtvae.model import MTVAE

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg, start_id, src = load_setup(args.data)
    model = MTVAE(cfg).eval()
    torch.manual_seed(args.seed)
    lib = AutoregressiveWrapper(CompressiveTransformer(num_tokens=cfg.vocab_size, **LIB_KW),
                                pad_value=cfg.pad_id).eval()
    params = {"mtvae": n_params(model), "library": n_params(lib)}

    load = os.getloadavg()
    rows = []
    with torch.inference_mode():
        check = check_cache(model, start_id, args.seed, args.check_steps)
        for B in batch_sizes:
            torch.manual_seed(args.seed + B)
            cond = torch.randn(B, model.d_cond)
            start = torch.full((B,), start_id, dtype=torch.long)
            variants = [
                ("mtvae cached", lambda n: gen_cached(model, start, cond, n), args.tokens),
                ("mtvae uncached", lambda n: gen_uncached(model, start, cond, n), n_nocache),
                ("library generate", lambda n: gen_library(lib, start, n), args.tokens),
            ]
            for name, fn, n in variants:
                print(f"batch {B}, {name}: {n} new tokens ...", file=sys.stderr, flush=True)
                rows.append({"variant": name, **measure(fn, B, n, args)})

    print(f"mtvae small ({params['mtvae']:,} parameters, {src}) vs compressive-transformer "
          f"d256 depth 6 ({params['library']:,} parameters); start token {start_id}; "
          f"{args.threads} threads, {args.warmup} warm-up tokens, median of {args.repeats}; "
          f"load average at start {load[0]:.2f}\n")
    if load[0] > 0.5:
        print(f"WARNING: load average {load[0]:.2f} at start: other processes compete for the "
              f"CPU, so these timings are unreliable\n")
    c = check
    print(f"cache check (torch.allclose atol {CHECK_ATOL:g} rtol {CHECK_RTOL:g}): first "
          f"{c['prefix_steps']} steps vs decode(prefix)[:, -1]: {c['prefix_allclose']} (max |diff| "
          f"{c['prefix_max_abs_diff']:.1e}; default tolerances: "
          f"{c['prefix_allclose_default_tol']}); {c['long_tokens']} tokens vs one decode: "
          f"{c['long_allclose']} (max |diff| {c['long_max_abs_diff']:.1e}, logit std "
          f"{c['logit_std']:.2f})\n")
    print("| batch | variant | new tokens | seconds | tokens/s |")
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['batch']} | {r['variant']} | {r['new_tokens']:,} | {r['seconds']:.2f} | "
              f"{r['tokens_per_s']:,.1f} |")

    ratios = {}
    print("\n| batch | cached / uncached | cached / library | target |")
    print("|---:|---:|---:|---|")
    for B in batch_sizes:
        tps = {r["variant"]: r["tokens_per_s"] for r in rows if r["batch"] == B}
        ratios[B] = rb = {"cached_over_uncached": tps["mtvae cached"] / tps["mtvae uncached"],
                          "cached_over_library": tps["mtvae cached"] / tps["library generate"]}
        met = lambda x: "met" if x >= TARGET_RATIO else "NOT met"  # noqa: E731
        print(f"| {B} | {rb['cached_over_uncached']:.1f}x ({met(rb['cached_over_uncached'])}) | "
              f"{rb['cached_over_library']:.1f}x ({met(rb['cached_over_library'])}) | "
              f">= {TARGET_RATIO:g}x each |")
    if n_nocache < args.tokens:
        print(f"\nuncached ran {n_nocache} new tokens, not {args.tokens}: its cost grows with "
              f"the square of the length, so cached / uncached is an underestimate")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "setup_from": src, "start_token": start_id, "parameters": params,
        "library_kwargs": {"num_tokens": cfg.vocab_size, **LIB_KW},
        "cache_check": check, "rows": rows, "ratios": ratios, "target_ratio": TARGET_RATIO,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_average_at_start": load},
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
