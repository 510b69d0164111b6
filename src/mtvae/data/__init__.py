"""Data: sources -> tokens -> DATA_DIR, and reading it back."""

from .dataset import SongStore, load_meta, load_split, load_tokenizer
from .pipeline import SPLITS, prepare, split_of

__all__ = ["prepare", "split_of", "SPLITS", "load_meta", "load_split", "load_tokenizer", "SongStore"]
