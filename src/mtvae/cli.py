"""Command line: a thin layer over the Python API.

Every sub-command turns ``UserError`` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from .errors import UserError

DEFAULT_SOURCE = "music21:bach"


def _prepare(args: argparse.Namespace) -> int:
    from .data.prepare import prepare, summarize

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
