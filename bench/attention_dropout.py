"""What attention dropout costs a training step (issue #9).

In training, ``Attention.forward`` drops attention weights with probability ``dropout`` (the
model's, 0.1). On CPU, SDPA's fused kernel (``_scaled_dot_product_flash_attention_for_cpu``)
takes no dropout: with ``dropout_p > 0`` PyTorch runs its unfused "math" path (scores,
softmax, ``bernoulli_`` mask and their backward materialised per head), and ``bernoulli_``
draws one number per weight from the scalar generator. ``attention.dropout_attention`` is the
same unfused computation with a mask drawn from a quarter as many 64-bit words.

Same model (``small`` preset, weights of seed 0), same batches (``TrainWindows``, batch 8,
``TrainConfig().segments`` segments), one thread; the variants are timed interleaved, one
step each in turn, so a change of machine load hits them alike. Wall time and the process's
CPU time are both recorded: on a shared machine the CPU time is the steadier of the two (a
descheduled thread adds wall time, not CPU time).

* ``off``: attention dropout 0 (the behaviour before the fix; the fused kernel);
* ``on, SDPA``: ``F.scaled_dot_product_attention(..., dropout_p=0.1)`` (math path);
* ``on``: ``attention.dropout_attention`` (what the model now does in training on CPU).

Every other dropout (residual, feed-forward, embedding) stays at 0.1 in every variant.
Timed: forward + backward of ``MTVAE.forward`` (the optimizer step does not depend on it).
Also timed: one decoder-shaped attention call (forward + backward) on its own, per variant,
with the kernel it runs and the time spent drawing the dropout mask (profiler).

    OMP_NUM_THREADS=1 .venv/bin/python bench/attention_dropout.py [--data DATA_DIR]
        [--reps 7] [--warmup 1] [--json bench/results/attention_dropout.json]

Without ``--data`` it prepares 60 Nottingham songs (``../shared/data/nottingham``) into a
temporary folder first (a few seconds).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mtvae.model import attention

SHIPPED = attention.dropout_attention
ROOT = Path(__file__).resolve().parents[1]


def prepared_data(arg: str | None) -> str:
    if arg:
        return arg
    from mtvae.data import prepare

    tmp = tempfile.mkdtemp(prefix="mtvae-attn-bench-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    out = Path(tmp) / "nd"
    prepare([str(ROOT.parent / "shared" / "data" / "nottingham")], out, max_files=60,
            workers=1, progress=False)
    return str(out)


def set_attention_dropout(model: torch.nn.Module, p: float) -> None:
    for m in model.modules():
        if isinstance(m, attention.Attention):
            m.dropout = p


def sdpa_dropout(q, k, v, mask, p):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)


VARIANTS = {  # name: (attention dropout, function used for it on CPU)
    "off": (0.0, None),
    "on, SDPA": (0.1, sdpa_dropout),
    "on": (0.1, None),  # None: the shipped attention.dropout_attention
}


def use(model: torch.nn.Module, variant: str) -> None:
    p, fn = VARIANTS[variant]
    attention.dropout_attention = fn or SHIPPED
    set_attention_dropout(model, p)


def sdpa_micro(reps: int) -> dict:
    """One decoder-shaped attention call (segment 128 over memory 256 + compressed 64 + itself,
    batch 8, 4 heads of 64), forward + backward, in ms: which kernel runs and what it costs."""
    from torch.profiler import ProfilerActivity, profile

    B, H, S, dh = 8, 4, 128, 64
    T = S + 256 + 64
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, n, dh, generator=g).requires_grad_() for n in (S, T, T))
    P = T - S
    i, j = torch.arange(S)[:, None], torch.arange(T)[None, :]
    mask = (j < P) | (j - P <= i)

    calls = {
        "off": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        "on, SDPA": lambda: sdpa_dropout(q, k, v, mask, 0.1),
        "on": lambda: SHIPPED(q, k, v, mask, 0.1),
    }
    res, ts = {}, {name: [] for name in calls}
    for name, call in calls.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            call().sum().backward()
        ops = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
        res[name] = {"kernel": sorted(k for k in ops if k.startswith("aten::_scaled_dot_product")
                                      and "backward" not in k) or ["matmul + softmax"],
                     "mask_ms": sum(ops.get(k, 0.0) for k in
                                    ("aten::bernoulli_", "aten::random_", "aten::lt")) / 1e3}
    for r in range(reps + 2):  # interleaved
        for name, call in calls.items():
            t0 = time.process_time()
            call().sum().backward()
            ts[name].append(time.process_time() - t0)
    for name in calls:
        res[name]["median_cpu_ms"] = 1e3 * statistics.median(ts[name][2:])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--segments", type=int, default=None, help="default: TrainConfig().segments")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "attention_dropout.json"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    from mtvae.config import TrainConfig, model_config
    from mtvae.data import load_meta, load_split
    from mtvae.data.windows import TrainWindows
    from mtvae.model import MTVAE

    tc = TrainConfig()
    segments = args.segments or tc.segments
    data = prepared_data(args.data)
    meta = load_meta(data)
    cfg = model_config("small", vocab_size=meta["vocab_size"], n_genres=len(meta["genres"]),
                       pad_id=meta["pad_id"])
    torch.manual_seed(args.seed)
    model = MTVAE(cfg).train()
    windows = TrainWindows(load_split(data, "train"), length=segments * cfg.seg_len,
                           batch_size=args.batch_size, max_bar_len=cfg.max_bar_len,
                           pad_id=cfg.pad_id, seed=args.seed)
    n = args.warmup + args.reps
    batches = [windows.batch(s) for s in range(n)]
    assert cfg.dropout == VARIANTS["on"][0]
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}  # wall seconds
    cpu: dict[str, list[float]] = {k: [] for k in VARIANTS}  # CPU seconds of this process
    load = os.getloadavg()
    for i, b in enumerate(batches):
        for name in VARIANTS:  # interleaved: one step of each in turn
            use(model, name)
            model.zero_grad(set_to_none=True)
            t0, c0 = time.perf_counter(), time.process_time()
            out = model(b, beta=1.0, free_bits=tc.free_bits)
            out["loss"].backward()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if i >= args.warmup:
                times[name].append(dt)
                cpu[name].append(dc)
    use(model, "on")
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    ratio = {k: med[k] / med["off"] for k in VARIANTS}
    ratio_cpu = {k: med_cpu[k] / med_cpu["off"] for k in VARIANTS}
    micro = sdpa_micro(args.reps)

    print(f"small preset ({model.num_parameters():,} parameters), batch {args.batch_size} x "
          f"{segments} segments x {cfg.seg_len} tokens, 1 thread, {args.warmup} warm-up + "
          f"{args.reps} timed steps per variant (interleaved); load average at start "
          f"{load[0]:.2f}\n")
    print("| attention dropout | median wall s | min-max wall s | / off | median CPU s | / off |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (p, _) in VARIANTS.items():
        t = times[name]
        print(f"| {name} ({p}) | {med[name]:.3f} | {min(t):.2f}-{max(t):.2f} | "
              f"{ratio[name]:.3f} | {med_cpu[name]:.3f} | {ratio_cpu[name]:.3f} |")
    print("\none decoder attention call (B8 H4 S128 T448 dh64, bool mask), fwd+bwd:")
    print("| attention dropout | kernel | median CPU ms | / off | drawing the mask, ms |")
    print("|---|---|---:|---:|---:|")
    for name in VARIANTS:
        m = micro[name]
        print(f"| {name} | {', '.join(m['kernel'])} | {m['median_cpu_ms']:.1f} | "
              f"{m['median_cpu_ms'] / micro['off']['median_cpu_ms']:.2f} | {m['mask_ms']:.1f} |")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "settings": {"preset": "small", "batch_size": args.batch_size, "segments": segments,
                     "seg_len": cfg.seg_len, "threads": 1, "reps": args.reps,
                     "warmup": args.warmup, "seed": args.seed,
                     "data": "60 Nottingham songs" if args.data is None else args.data},
        "parameters": model.num_parameters(),
        "step_s": times, "median_step_s": med, "ratio_to_off": ratio,
        "step_cpu_s": cpu, "median_step_cpu_s": med_cpu, "ratio_to_off_cpu": ratio_cpu,
        "sdpa_call": micro,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_average_at_start": load},
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
