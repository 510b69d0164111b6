"""Data: sources -> tokens -> DATA_DIR, and reading it back."""

from .dataset import DataDir, SongStore
from .pipeline import SPLITS, prepare, split_of

__all__ = ["prepare", "split_of", "SPLITS", "DataDir", "SongStore"]
