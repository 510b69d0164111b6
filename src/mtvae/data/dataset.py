"""Dataset: read a prepared DATA_DIR (memory-mapped flat arrays, no pickle).

``DataDir`` opens the folder once (refusing one that is not a complete DATA_DIR of this
format version); ``SongStore`` gives each song's ids, bar starts and bar attributes as numpy
views.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import UserError
from .pipeline import FORMAT_VERSION, SPLITS
from .tokens import load_tokenizer


class DataDir:
    """A prepared DATA_DIR, opened once: ``meta.json`` is checked when it is opened (a
    folder that is not a complete DATA_DIR of this format is refused in one line); the
    tokenizer, the attribute edges, each split and the manifest are read on first use and
    kept."""

    def __init__(self, path: str | Path):
        d = Path(path)
        if not d.is_dir():
            raise UserError(f"DATA_DIR not found: {d}")
        meta_path = d / "meta.json"
        if not meta_path.is_file():
            raise UserError(
                f"{d} is not a prepared DATA_DIR (no meta.json: run 'mtvae prepare ... --out {d}')"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{meta_path} is damaged ({e}): run 'mtvae prepare' again") from None
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            raise UserError(
                f"{d} was made by an incompatible mtvae (format "
                f"{meta.get('format_version') if isinstance(meta, dict) else '?'}, "
                f"this version reads {FORMAT_VERSION}): run 'mtvae prepare' again"
            )
        if meta.get("bpe"):
            raise UserError(f"{d} was prepared with --bpe-vocab, which this mtvae no longer "
                            "reads (generation needs base tokens): run 'mtvae prepare' again")
        self.path, self.meta = d, meta
        self._splits: dict[str, SongStore] = {}
        self._manifest: list[dict] | None = None

    def __str__(self) -> str:
        return str(self.path)

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def genres(self) -> list[str]:
        return list(self.meta["genres"])

    @cached_property
    def tokenizer(self):
        return load_tokenizer(self.path)

    @cached_property
    def attribute_edges(self) -> dict:
        return json.loads((self.path / "attributes.json").read_text())["edges"]

    def split(self, name: str = "train") -> SongStore:
        """All songs of one split (memory-mapped arrays, no pickle)."""
        if name not in SPLITS:
            raise UserError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
        if name not in self._splits:
            folder = self.path / name
            self._splits[name] = SongStore(**{
                f: np.load(folder / f"{f}.npy", mmap_mode="r", allow_pickle=False)
                for f in SongStore.__dataclass_fields__})
        return self._splits[name]

    def manifest(self, split: str | None = None) -> list[dict]:
        """manifest.csv's rows (source, path, file, hash, genre, programs, split, tokens,
        bars), of one split or all."""
        import csv

        if self._manifest is None:
            with open(self.path / "manifest.csv") as f:
                self._manifest = list(csv.DictReader(f))
        return [r for r in self._manifest if split is None or r["split"] == split]

    def files(self, split: str) -> list[Path]:
        """The split's source MIDI files (absolute paths in manifest.csv)."""
        files = [Path(r["file"]) for r in self.manifest(split)]
        for p in files:
            if not p.is_file():
                raise UserError(f"{self.path}/manifest.csv names {p}, which is gone (or "
                                "relative to another folder): run 'mtvae prepare' again")
        return files


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
