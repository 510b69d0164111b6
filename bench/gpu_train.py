"""Train on a GPU for a given number of minutes and report tokens/s and MFU (see gpu_train.sh).

1. The peak: a large bf16 matrix product on the GPU (fp32 on the CPU in ``--dry-run``),
   measured in this process: the denominator of the MFU.
2. ``mtvae train DATA_DIR --out RUN_DIR --device cuda --max-minutes MINUTES`` itself, with its
   checkpoints (``--resume`` when RUN_DIR already holds a run): what a user's run does, bf16
   autocast and SDPA's fused kernels included.
3. tokens/s from the run's metrics.csv (this invocation's steps, its first logging window
   left out), the arithmetic per token of one step of the same shape counted by
   ``torch.utils.flop_counter.FlopCounterMode`` (forward and backward), and so the achieved
   TFLOP/s and their share of the peak, printed and written to ``--json``.

    python bench/gpu_train.py [--dry-run] DATA_DIR MINUTES [RUN_DIR] [--preset base]
        [--batch-size 32] [--segments 4] [--json bench/results/gpu_train.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 10) -> float:
    """FLOP/s of an n x n x n matrix product (median of ``repeats``)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def flops_per_token(data_dir: str, run_dir: Path, device: torch.device) -> float:
    """Forward + backward FLOPs per target token of one training step of the run's shape."""
    from torch.utils.flop_counter import FlopCounterMode

    from mtvae.data import DataDir
    from mtvae.data.windows import TrainWindows
    from mtvae.model import MTVAE
    from mtvae.run import RunDir

    cfg = RunDir(run_dir).config
    m, t = cfg.model, cfg.train
    store = DataDir(data_dir).split("train")
    batch = TrainWindows(store, t.segments * m.seg_len, t.batch_size, m.max_bar_len,
                         m.pad_id).batch(0).to(device)
    model = MTVAE(m).to(device).train()
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
           else torch.autocast("cpu", enabled=False))
    with FlopCounterMode(display=False) as counter:
        with amp:
            out = model(batch)
        out["loss"].backward()
    return counter.get_total_flops() / int(out["n_tokens"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("minutes", type=float)
    ap.add_argument("run_dir", nargs="?", default="runs/gpu")
    ap.add_argument("--dry-run", action="store_true",
                    help="on the CPU: tiny preset, fp32 peak (checks the path, not the speed)")
    ap.add_argument("--preset", default=None, help="default: base (tiny with --dry-run)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: 32 (4 with --dry-run)")
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--prior-steps", type=int, default=None,
                    help="the learnt prior's steps after training (default: train's; 0 with --dry-run)")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "gpu_train.json"))
    args = ap.parse_args()

    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here (use --dry-run to check the path on a CPU)")
    preset = args.preset or ("tiny" if args.dry_run else "base")
    batch = args.batch_size or (4 if args.dry_run else 32)
    run = Path(args.run_dir)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    peak = matmul_peak(device, dtype, 1024 if args.dry_run else 8192)
    print(f"{name}: {peak / 1e12:.1f} TFLOP/s ({dtype}, large matrix product)", flush=True)

    from mtvae.run import CONFIG, RunDir

    resume = (run / CONFIG).exists()
    before = len(RunDir(run).metrics()) if resume else 0
    cmd = [sys.executable, "-m", "mtvae", "train", args.data_dir, "--out", str(run),
           "--device", device.type, "--max-minutes", str(args.minutes), "--quiet"]
    cmd += ["--resume"] if resume else ["--preset", preset, "--batch-size", str(batch),
                                         "--segments", str(args.segments)]
    prior = 0 if args.dry_run and args.prior_steps is None else args.prior_steps
    cmd += [] if prior is None else ["--prior-steps", str(prior)]
    t0 = time.time()
    subprocess.run(cmd, check=True, env=os.environ)
    wall = time.time() - t0
    rows = [r for r in RunDir(run).metrics()[before:] if r["split"] == "train"]
    rates = [float(r["tokens_per_s"]) for r in rows[1:]] or [float(r["tokens_per_s"]) for r in rows]
    if not rates:
        raise SystemExit(f"{run}: no training steps were logged in {args.minutes} minutes")
    tps = statistics.mean(rates)
    fpt = flops_per_token(args.data_dir, run, device)
    achieved = tps * fpt
    cfg = RunDir(run).config
    report = {
        "device": name, "dry_run": args.dry_run, "preset": cfg.train.preset,
        "batch_size": cfg.train.batch_size, "segments": cfg.train.segments,
        "minutes": args.minutes, "wall_s": wall, "resumed": resume,
        "last_step": int(rows[-1]["step"]) if rows else None, "tokens_per_s": tps,
        "gflop_per_token": fpt / 1e9, "achieved_tflop_per_s": achieved / 1e12,
        "peak_tflop_per_s": peak / 1e12, "peak_dtype": str(dtype).replace("torch.", ""),
        "mfu": achieved / peak, "torch": torch.__version__,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\n| device | preset | batch x segments | tokens/s | GFLOP/token | TFLOP/s | "
          f"peak TFLOP/s | MFU |\n|---|---|---|---:|---:|---:|---:|---:|\n"
          f"| {name} | {report['preset']} | {report['batch_size']} x {report['segments']} | "
          f"{tps:,.0f} | {fpt / 1e9:.3f} | {achieved / 1e12:.2f} | {peak / 1e12:.1f} | "
          f"{report['mfu']:.1%} |\nwrote {out}")


if __name__ == "__main__":
    main()
