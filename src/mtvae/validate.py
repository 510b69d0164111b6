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
