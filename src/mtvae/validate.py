"""Argument checks shared by the Python API and the command line.

Every public entry point (``prepare``, ``train``, ``evaluate``, the ``MusicVAE`` methods, the
renderers) checks its arguments here before doing any work. A bad value raises ``UserError``
with one line that names the option as the command line spells it and says what is allowed;
the CLI prints it and exits with code 2.

Upper bounds keep every request finite: nothing here lets a single call run without bound.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .errors import UserError

MAX_GEN_BARS = 512  # bars one generating call may write per piece
MAX_PIECES = 256  # pieces per call (sample --n, interpolate --steps, evaluate --samples)
MAX_SEED = 2**63 - 1


def flag(name: str) -> str:
    """``top_k`` -> ``--top-k``."""
    return name if name.startswith("-") else "--" + name.replace("_", "-")


def integer(name: str, value, lo: int | None = None, hi: int | None = None,
            allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int,)) and not _is_np_int(value):
        raise UserError(f"{flag(name)} {value!r}: must be a whole number{_range(lo, hi)}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise UserError(f"{flag(name)} {value}: must be{_range(lo, hi)}")
    return value


def number(name: str, value, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{flag(name)} {value!r}: must be a number") from None
    if not math.isfinite(v):
        raise UserError(f"{flag(name)} {value}: must be a finite number{_range(lo, hi, lo_open)}")
    if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
        raise UserError(f"{flag(name)} {value}: must be{_range(lo, hi, lo_open)}")
    return v


def _is_np_int(value) -> bool:
    try:
        import numpy as np

        return isinstance(value, np.integer)
    except ImportError:  # pragma: no cover
        return False


def _range(lo, hi, lo_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f" {'above' if lo_open else 'from'} {lo}" + (f" and at most {hi}" if lo_open else f" to {hi}")
    if lo is not None:
        return f" {'above' if lo_open else 'at least'} {lo}"
    if hi is not None:
        return f" at most {hi}"
    return ""


# ----------------------------------------------------------------------------- common groups


def sampling(temperature, top_k, top_p) -> tuple[float, int | None, float | None]:
    """Temperature 0 (greedy) to 100, top-k a positive count, top-p in (0, 1]."""
    t = number("temperature", temperature, 0.0, 100.0)
    k = integer("top_k", top_k, 1, 1_000_000, allow_none=True)
    p = number("top_p", top_p, 0.0, 1.0, lo_open=True, allow_none=True)
    return t, k, p


def seed(value, allow_none: bool = True) -> int | None:
    return integer("seed", value, 0, MAX_SEED, allow_none=allow_none)


def bars(value, name: str = "bars", hi: int = MAX_GEN_BARS, allow_none: bool = False):
    return integer(name, value, 1, hi, allow_none=allow_none)


def device(name: str) -> str:
    """auto, cpu, cuda or cuda:N, and only a GPU that exists."""
    import torch

    if not isinstance(name, str):
        raise UserError(f"--device {name!r}: choose auto, cpu or cuda")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is available here (use cpu or auto)")
        if name != "cuda":
            idx = name[5:]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                raise UserError(f"--device {name}: this machine has CUDA devices "
                                f"0..{torch.cuda.device_count() - 1}")
        return name
    raise UserError(f"--device {name}: choose auto, cpu or cuda")


def out_dir(path, name: str = "out") -> Path:
    """A folder to write into: created if missing; refused if it is a file or not writable."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag(name)} {p}: exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag(name)} {p}: cannot create the folder ({e.strerror or e})") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise UserError(f"{flag(name)} {p}: the folder is not writable")
    return p


def out_file(path, name: str) -> Path:
    """A file to write: its folder is created if missing; refused if the path is a folder."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{flag(name)} {p}: is a folder, expected a file name")
    out_dir(p.parent if str(p.parent) else ".", name)
    return p


def bar_ranges(spec, n_bars: int, name: str = "bars") -> list[tuple[int, int]]:
    """Bar ranges as the command line writes them, numbered from 1 and inclusive ("9-12",
    "3-4,11-12", "5"), or a list of (first, last) pairs -> sorted [(start, stop)] numbered
    from 0, stop exclusive. Refused: empty or backwards ranges, overlaps, bars past the end."""
    flagged = f"{flag(name)} {spec}"
    pairs = []
    if isinstance(spec, str):
        for part in spec.split(","):
            a, sep, b = part.strip().partition("-")
            if not a.strip().isdigit() or (sep and not b.strip().isdigit()):
                raise UserError(f"{flagged}: write bar ranges as FIRST-LAST, e.g. 9-12 or 3-4,11-12")
            pairs.append((int(a), int(b) if sep else int(a)))
    elif isinstance(spec, (list, tuple)) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(
                isinstance(x, int) and not isinstance(x, bool) for x in p) for p in spec):
        pairs = [tuple(p) for p in spec]
    else:
        raise UserError(f"{flagged}: write bar ranges as FIRST-LAST, e.g. 9-12 or 3-4,11-12")
    if not pairs:
        raise UserError(f"{flagged}: no bars given")
    out = []
    for a, b in pairs:
        if a < 1 or b < a:
            raise UserError(f"{flag(name)} {a}-{b}: an empty range (bars are numbered from 1, "
                            "FIRST <= LAST)")
        if b > n_bars:
            raise UserError(f"{flag(name)} {a}-{b}: the song has {n_bars} bars")
        if b - a + 1 > MAX_GEN_BARS:
            raise UserError(f"{flag(name)} {a}-{b}: at most {MAX_GEN_BARS} bars per range")
        out.append((a - 1, b))
    out.sort()
    for (a0, b0), (a1, b1) in zip(out, out[1:]):
        if a1 < b0:
            raise UserError(f"{flag(name)} {spec}: ranges {a0 + 1}-{b0} and {a1 + 1}-{b1} overlap")
    return out
