"""Training speed on CPU: mtvae ``small`` against the original study's Compressive Transformer.

Measures training throughput (target tokens per second of forward + backward + optimizer
step) and peak memory (max RSS of the process) for:

* mtvae ``small``: AdamW (mtvae's parameter groups), grad clip 1.0, beta 1.0, free bits 0.25;
* compressive-transformer-pytorch (the study's model: seq_len 64, mem_len 64, cmem_len 256,
  dropout 0.1) in its AutoregressiveWrapper, Adam, one backward per 64-token segment and one
  optimizer step per batch; (b1) at mtvae's width and the study's depth 6, (b2) at the same
  width with the depth whose parameter count is closest to mtvae's (memory on the last two
  layers). When both are the same model it is measured once.

Each model's arithmetic per token (matrix products, attention, convolutions; forward and
backward) is counted by ``torch.utils.flop_counter.FlopCounterMode`` on one extra untimed
step, which gives the achieved GFLOP/s: how close each model runs to the core's peak (a large
fp32 matrix product, measured in the same run), and the GFLOP/s mtvae would need to reach the
target.

Every model trains on the same batches (``TrainWindows``, same seed) in its own subprocess,
so peak RSS is per model (it includes Python, torch and the training split). Batches are
built before timing; warm-up steps are not timed; tokens/s = mean tokens per timed step /
median step time. Tokens are the non-pad targets, the same count for every model.

Beside them, **the real loop**: ``mtvae train`` itself on the same shape and threads for
``--real-steps`` steps (default settings: augmentation, infilling windows, logging, the final
checkpoint), its tokens/s read from its metrics.csv (windows of 10 steps, the first left out),
as a share of the bare step's tokens/s and of the fp32 peak.

Note: the library's SelfAttention calls ``self.to_kv.weight.detach_()`` once compressed memory
exists, which permanently turns off gradients of the memory layers' key/value weights (a
library bug, measured as is: it makes the library's backward slightly cheaper).

    .venv/bin/python bench/train_speed.py [--data data/pn] [--batch-size 4] [--segments 4]
        [--steps 8] [--warmup 2] [--threads 2] [--real-steps 40]
        [--json bench/results/train_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

TARGET_RATIO = 1.5  # mtvae tokens/s over the library's, at matched parameter count
LIB_SEG = 64  # the study's seq_len: the wrapper splits windows into 64-token segments


def mtvae_config(data_dir: str):
    from mtvae.config import model_config
    from mtvae.data import DataDir

    meta = DataDir(data_dir).meta
    return model_config("small", vocab_size=meta["vocab_size"], n_genres=len(meta["genres"]),
                        pad_id=meta["pad_id"])


def lib_kwargs(cfg, depth: int) -> dict:
    return dict(num_tokens=cfg.vocab_size, dim=cfg.d_model, depth=depth, seq_len=LIB_SEG,
                mem_len=64, cmem_len=256, cmem_ratio=4, memory_layers=[depth - 1, depth],
                heads=cfg.n_heads, attn_dropout=0.1, ff_dropout=0.1, attn_layer_dropout=0.1)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------- worker
def worker(args) -> dict:
    """Time one model; runs in its own process."""
    from mtvae.data import DataDir
    from mtvae.data.windows import TrainWindows

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = mtvae_config(args.data)
    length = cfg.seg_len * args.segments
    windows = TrainWindows(DataDir(args.data).split("train"), length=length,
                           batch_size=args.batch_size, max_bar_len=cfg.max_bar_len,
                           pad_id=cfg.pad_id, seed=args.seed)
    batches = [windows.batch(s) for s in range(args.warmup + args.steps)]
    rss_before_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if args.worker == "mtvae":
        from mtvae.config import TrainConfig
        from mtvae.model import MTVAE
        from mtvae.train import make_optimizer

        model = MTVAE(cfg)
        opt = make_optimizer(model, TrainConfig())

        def step(b) -> int:
            out = model(b, beta=1.0, free_bits=0.25)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return int(out["n_tokens"])
    else:
        from compressive_transformer_pytorch import AutoregressiveWrapper, CompressiveTransformer

        if length % LIB_SEG:
            raise SystemExit(f"window length {length} is not a multiple of {LIB_SEG}")
        model = AutoregressiveWrapper(CompressiveTransformer(**lib_kwargs(cfg, args.depth)),
                                      ignore_index=cfg.pad_id, pad_value=cfg.pad_id)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step(b) -> int:
            x = torch.cat([b.inputs, b.targets[:, -1:]], dim=1)  # [B, L+1]
            opt.zero_grad(set_to_none=True)
            for loss, aux_loss, _ in model(x, return_loss=True):  # one per 64-token segment
                (loss + aux_loss).backward()
            opt.step()
            return int((b.targets != cfg.pad_id).sum())

    params = n_params(model)
    model.train()
    times, tokens = [], []
    for i, b in enumerate(batches):
        t0 = time.perf_counter()
        n = step(b)
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt)
            tokens.append(n)
    median = statistics.median(times)
    tok_per_step = statistics.mean(tokens)
    # arithmetic of one more (untimed) step: matrix products, attention and convolutions,
    # forward and backward, as counted by PyTorch's FlopCounterMode
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        n = step(batches[-1])
    flops_per_token = counter.get_total_flops() / n
    return {"parameters": params, "tokens_per_step": tok_per_step, "median_step_s": median,
            "tokens_per_s": tok_per_step / median, "step_s": times,
            "gflop_per_token": flops_per_token / 1e9,
            "achieved_gflop_per_s": flops_per_token * tok_per_step / median / 1e9,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_model_mib": rss_before_model}


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a large fp32 matrix product: what one step's arithmetic could run at."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e9


def real_loop(args) -> dict:
    """``mtvae train`` itself (default settings: augmentation, infilling windows, logging,
    the checkpoint at the end) for ``--real-steps`` steps of the same shape, in its own
    process at ``--threads``: tokens/s from its metrics.csv, the first logging window (warm-up)
    left out."""
    import tempfile

    from mtvae.run import RunDir

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        cmd = [sys.executable, "-m", "mtvae", "train", args.data, "--out", f"{tmp}/run",
               "--preset", "small", "--batch-size", str(args.batch_size), "--segments",
               str(args.segments), "--max-steps", str(args.real_steps), "--val-every",
               str(10**6), "--prior-steps", "0", "--seed", str(args.seed), "--quiet"]
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        rows = [r for r in RunDir(f"{tmp}/run").metrics() if r["split"] == "train"]
    timed = [r for r in rows if int(r["step"]) > 10]  # rates over windows of 10 steps
    rates = [float(r["tokens_per_s"]) for r in timed]
    return {"steps": args.real_steps, "tokens_per_s": statistics.mean(rates),
            "tokens_per_s_windows": rates}


# ---------------------------------------------------------------------------- driver
def run(args, kind: str, depth: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--depth", str(depth), "--data", args.data,
           "--batch-size", str(args.batch_size), "--segments", str(args.segments),
           "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--seed", str(args.seed)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/pn")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real-steps", type=int, default=40,
                    help="also run `mtvae train` for this many steps (0: not)")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "train_speed.json"))
    ap.add_argument("--worker", choices=["mtvae", "library"], help=argparse.SUPPRESS)
    ap.add_argument("--depth", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(worker(args)))
        return
    if not (Path(args.data) / "meta.json").exists():
        sys.exit(f"no prepared data in {args.data}; run: .venv/bin/mtvae prepare "
                 f"../shared/data/pop909 ../shared/data/nottingham --out {args.data}")

    from compressive_transformer_pytorch import CompressiveTransformer
    from mtvae.model import MTVAE

    cfg = mtvae_config(args.data)
    with torch.device("meta"):  # parameter counts without allocating
        target = n_params(MTVAE(cfg))
        counts = {}
        depth = 2
        while not counts or counts[depth - 1] < target:
            counts[depth] = n_params(CompressiveTransformer(**lib_kwargs(cfg, depth)))
            depth += 1
    matched = min(counts, key=lambda d: abs(counts[d] - target))

    load = os.getloadavg()
    lib = f"compressive-transformer d{cfg.d_model}"
    rows = [{"model": "mtvae small", **run(args, "mtvae")}]
    if matched == 6:
        rows.append({"model": f"{lib} depth 6 (matched width = matched params)",
                     "config": "b1+b2", **run(args, "library", 6)})
    else:
        rows.append({"model": f"{lib} depth 6 (matched width)", "config": "b1",
                     **run(args, "library", 6)})
        rows.append({"model": f"{lib} depth {matched} (matched params)", "config": "b2",
                     **run(args, "library", matched)})

    real = real_loop(args) if args.real_steps > 20 else None
    peak = matmul_peak(args.threads)
    print(f"batch {args.batch_size} x {args.segments * cfg.seg_len} tokens, "
          f"{args.threads} threads, {args.warmup} warm-up + {args.steps} timed steps; "
          f"load average at start {load[0]:.2f}\n")
    print("| model | parameters | tokens/step | median step s | tokens/s | GFLOP/token | "
          "GFLOP/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['parameters']:,} | {r['tokens_per_step']:,.0f} | "
              f"{r['median_step_s']:.3f} | {r['tokens_per_s']:,.0f} | "
              f"{r['gflop_per_token']:.4f} | {r['achieved_gflop_per_s']:.1f} | "
              f"{r['peak_rss_mib']:,.0f} |")
    mt = rows[0]["tokens_per_s"]
    if real:
        gflop = real["tokens_per_s"] * rows[0]["gflop_per_token"]
        real.update(achieved_gflop_per_s=gflop, share_of_peak=gflop / peak,
                    share_of_bare_step=real["tokens_per_s"] / mt)
        print(f"\n| `mtvae train`, {real['steps']} steps (the real loop) | tokens/s | GFLOP/s | "
              "share of the fp32 peak | share of the bare step |\n|---|---:|---:|---:|---:|\n"
              f"| mtvae small | {real['tokens_per_s']:,.0f} | {gflop:.1f} | "
              f"{real['share_of_peak']:.0%} | {real['share_of_bare_step']:.0%} |")
        print(f"mtvae small's bare step: {rows[0]['achieved_gflop_per_s']:.1f} GFLOP/s, "
              f"{rows[0]['achieved_gflop_per_s'] / peak:.0%} of the peak")
    ratios = {}
    # the GFLOP/s mtvae would need for the target against the matched-parameter library row
    need = TARGET_RATIO * rows[-1]["tokens_per_s"] * rows[0]["gflop_per_token"]
    print(f"\nlarge fp32 matrix product on {args.threads} thread(s): {peak:.1f} GFLOP/s; "
          f"the target needs mtvae at {need:.1f} GFLOP/s ({need / peak:.2f}x that peak)")
    for r in rows[1:]:
        ratios[r["config"]] = ratio = mt / r["tokens_per_s"]
        line = f"mtvae / {r['model']}: {ratio:.2f}x tokens/s"
        if "b2" in r["config"]:
            line += (f" (target >= {TARGET_RATIO}x at matched parameters: "
                     f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})")
        print(line)

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "depth", "json")},
        "window_tokens": args.segments * cfg.seg_len, "rows": rows, "real_loop": real,
        "library_params_by_depth": counts, "matched_depth": matched,
        "ratio_tokens_per_s": ratios, "target_ratio_matched_params": TARGET_RATIO,
        "matmul_peak_gflop_per_s": peak, "gflop_per_s_needed_for_target": need,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_average_at_start": load},
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
