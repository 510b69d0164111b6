"""Dataset: read a prepared DATA_DIR (memory-mapped flat arrays, no pickle).

``load_meta`` refuses a folder that is not a complete DATA_DIR of this format version;
``SongStore`` gives each song's ids, bar starts and bar attributes as numpy views.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .pipeline import FORMAT_VERSION, SPLITS


def load_meta(data_dir: str | Path) -> dict:
    d = Path(data_dir)
    if not d.is_dir():
        raise UserError(f"DATA_DIR not found: {d}")
    meta_path = d / "meta.json"
    if not meta_path.is_file():
        raise UserError(
            f"{d} is not a prepared DATA_DIR (no meta.json: run 'mtvae prepare ... --out {d}')"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{d} was made by an incompatible mtvae (format {meta.get('format_version')}, "
            f"this version reads {FORMAT_VERSION}): run 'mtvae prepare' again"
        )
    return meta


def load_tokenizer(data_dir: str | Path):
    from miditok import REMI

    return REMI(params=Path(data_dir) / "tokenizer.json")


@dataclass
class SongStore:
    """All songs of one split."""

    tokens: np.ndarray
    token_offsets: np.ndarray
    bar_starts: np.ndarray
    bar_offsets: np.ndarray
    rhythm: np.ndarray
    polyphony: np.ndarray
    genre: np.ndarray

    def __len__(self) -> int:
        return len(self.token_offsets) - 1

    def ids(self, i: int) -> np.ndarray:
        return self.tokens[self.token_offsets[i]:self.token_offsets[i + 1]]

    def bars(self, i: int) -> np.ndarray:
        return self.bar_starts[self.bar_offsets[i]:self.bar_offsets[i + 1]]

    def attributes(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        sl = slice(self.bar_offsets[i], self.bar_offsets[i + 1])
        return self.rhythm[sl], self.polyphony[sl]

    @property
    def num_tokens(self) -> int:
        return int(self.token_offsets[-1])


def load_split(data_dir: str | Path, split: str = "train", mmap: bool = True) -> SongStore:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    load_meta(data_dir)
    folder = Path(data_dir) / split
    mode = "r" if mmap else None
    arrays = {
        name: np.load(folder / f"{name}.npy", mmap_mode=mode, allow_pickle=False)
        for name in SongStore.__dataclass_fields__
    }
    return SongStore(**arrays)
