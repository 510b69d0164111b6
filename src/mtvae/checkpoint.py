"""Checkpoints: every file is written to a temporary name and renamed, so a process killed at
any moment leaves the previous version loadable. Weights are safetensors; the training state
(optimizer, scheduler, RNG) is loaded with ``torch.load(weights_only=True)``: no pickle of
arbitrary objects is ever read."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from .config import RunConfig
from .errors import UserError

CONFIG = "config.json"
BEST = "model.safetensors"
LAST = "last.safetensors"
STATE = "training_state.pt"


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict | None = None) -> None:
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    atomic_write(path, lambda tmp: save_model(model, tmp, metadata=meta))


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    missing, unexpected = load_model(model, str(path), strict=True)
    if missing or unexpected:
        raise UserError(f"{path} does not fit this model (missing {missing}, unexpected {unexpected})")


def save_config(cfg: RunConfig, run_dir: str | Path) -> None:
    text = cfg.to_json()
    atomic_write(Path(run_dir) / CONFIG, lambda tmp: Path(tmp).write_text(text))


def save_state(state: dict, path: str | Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
