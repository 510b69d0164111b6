"""Command line: a thin layer over the Python API.

Every sub-command turns ``UserError`` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from .errors import UserError

DEFAULT_SOURCE = "music21:bach"


def _prepare(args: argparse.Namespace) -> int:
    from .data.pipeline import prepare, summarize

    report = prepare(
        args.sources or [DEFAULT_SOURCE], args.out, labels=args.labels, genres=args.genre,
        programs=args.program, per_genre=args.per_genre, seed=args.seed,
        max_files=args.max_files, workers=args.workers, bpe_vocab=args.bpe_vocab,
        progress=not args.quiet,
    )
    for s in report["skipped"][:20]:
        print(f"warning: skipped {s['path']}: {s['reason']}", file=sys.stderr)
    if len(report["skipped"]) > 20:
        print(f"warning: ... and {len(report['skipped']) - 20} more (see report.json)",
              file=sys.stderr)
    print(summarize(report))
    print(f"wrote {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train import train

    overrides = {k: getattr(args, k) for k in
                 ("max_steps", "batch_size", "lr", "seed", "patience", "val_every", "segments")
                 if getattr(args, k) is not None}
    model = {}
    if args.no_vae:
        model["use_vae"] = False
    if args.no_memory:
        model["use_memory"] = False
    if args.no_compression:
        model["use_compression"] = False
    summary = train(args.data_dir, args.out, preset=args.preset, resume=args.resume,
                    device=args.device, quiet=args.quiet, max_minutes=args.max_minutes,
                    model_overrides=model, **overrides)
    if "best_val_loss" in summary:
        print(f"stopped after {summary['steps']} steps ({summary['stopped']}); best validation "
              f"{summary['best_val_loss']:.4f} nats/token "
              f"({summary['best_val_bits_per_token']:.3f} bits); wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtvae", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    pp = sub.add_parser(
        "prepare", help="MIDI sources -> tokens, bars and attributes in DATA_DIR",
        description="SOURCE: a folder of MIDI files, lakh:PATH (clean_midi or lmd_matched), "
        f"or music21:NAME[,NAME...]. Default: {DEFAULT_SOURCE}.",
    )
    pp.add_argument("sources", nargs="*", metavar="SOURCE")
    pp.add_argument("--out", required=True, metavar="DATA_DIR")
    pp.add_argument("--labels", metavar="FILE", help="genre labels (CSV/TSV or tagtraum .cls)")
    pp.add_argument("--genre", action="append", metavar="G", help="keep this genre (repeatable)")
    pp.add_argument("--program", action="append", type=int, metavar="P",
                    help="keep songs with a non-drum track of this GM program, 0-based (repeatable)")
    pp.add_argument("--per-genre", type=int, metavar="N", help="sample N songs per genre")
    pp.add_argument("--seed", type=int, default=0)
    pp.add_argument("--max-files", type=int, metavar="N")
    pp.add_argument("--workers", type=int, metavar="N", help="processes (default: all cores)")
    pp.add_argument("--bpe-vocab", type=int, metavar="N", help="train BPE to N tokens (train split)")
    pp.add_argument("--quiet", action="store_true", help="no progress bar")
    pp.set_defaults(func=_prepare)

    pt = sub.add_parser("train", help="train a model on a DATA_DIR",
                        description="Train, or with --resume continue, a model; writes RUN_DIR.")
    pt.add_argument("data_dir", metavar="DATA_DIR")
    pt.add_argument("--out", required=True, metavar="RUN_DIR")
    pt.add_argument("--preset", default="small", choices=("tiny", "small", "base"))
    pt.add_argument("--max-steps", type=int)
    pt.add_argument("--max-minutes", type=float)
    pt.add_argument("--batch-size", type=int)
    pt.add_argument("--segments", type=int, help="segments per example (memory carried)")
    pt.add_argument("--lr", type=float)
    pt.add_argument("--seed", type=int)
    pt.add_argument("--patience", type=int, help="validations without improvement to stop")
    pt.add_argument("--val-every", type=int, metavar="N")
    pt.add_argument("--device", default="auto", help="auto, cpu or cuda")
    pt.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    pt.add_argument("--no-vae", action="store_true", help="ablation: decoder alone")
    pt.add_argument("--no-memory", action="store_true", help="ablation: no memory at all")
    pt.add_argument("--no-compression", action="store_true",
                    help="ablation: Transformer-XL memory without compression")
    pt.add_argument("--quiet", action="store_true", help="log lines instead of a progress bar")
    pt.set_defaults(func=_train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"mtvae {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
