"""Sources: find MIDI files and their genre labels.

A SOURCE string names one of three kinds of collection:

* ``PATH`` — a folder searched recursively for ``.mid``/``.midi`` files;
* ``lakh:PATH`` — the Lakh MIDI Dataset, either the ``clean_midi`` layout (``Artist/Title.mid``,
  ``Artist/Title.1.mid`` for other versions of the same song) or the ``lmd_matched`` /
  ``lmd_aligned`` layout (``R/R/R/TRxxxxxxxxxxxxxxxx/<md5>.mid``, the folder is the MSD track id);
* ``music21:NAME[,NAME...]`` — works of the corpus that ships inside music21, converted to
  MIDI on first use and cached (see ``materialize``); a work's genre is its collection's name.

Any of them may be prefixed ``GENRE=`` (``pop=data/pop909``, ``folk=music21:essen,oneills``):
every song it lists gets that genre, over any label, so corpora mixed in one DATA_DIR keep
apart under ``--genre``.

Listing is cheap (no file is parsed); reading bytes happens in the worker processes.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import UserError

MIDI_SUFFIXES = {".mid", ".midi"}
GENRE_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_-]{0,63})=(.+)$")  # "pop=PATH"
MSD_ID = re.compile(r"^TR[A-Z0-9]{16}$")
VERSION_SUFFIX = re.compile(r"\.\d+$")  # clean_midi's "Title.1.mid" duplicates

# Short names for music21's folk collections; any corpus folder name works too.
MUSIC21_ALIASES = {
    "essen": "essenFolksong",
    "oneills": "oneills1850",
    "ryans": "ryansMammoth",
    "nottingham": "nottingham-dataset",
}
MUSIC21_SKIP = {"demos", "theoryExercises", "leadSheet", "_metadataCache", "__pycache__"}
MUSIC21_SUFFIXES = {".mxl", ".xml", ".musicxml", ".krn", ".abc", ".mid", ".midi", ".md"}


@dataclass(frozen=True)
class SourceItem:
    """One song to read: where its bytes come from and what we know before parsing it."""

    source: str  # the SOURCE string it was listed from
    rel: str  # path relative to the source root ("Artist/Title.mid"); unique within a source
    path: str  # file on disk (for music21 items: the cached MIDI, made by ``materialize``)
    song: str  # song identity: versions of one clean_midi song share it
    genre: str | None = None
    music21: tuple[str, int | None] | None = None  # (corpus file, abc tune number)

    @property
    def name(self) -> str:
        """How to name the song to a user (reports, warnings)."""
        return f"music21:{self.rel}" if self.music21 else self.path


# ----------------------------------------------------------------------------- labels


@dataclass
class Labels:
    """Genre labels read from a CSV/TSV or tagtraum ``.cls`` file."""

    by_path: dict[str, str]
    by_artist_title: dict[tuple[str, str], str]
    by_msd: dict[str, str]

    def lookup(self, rel: str) -> str | None:
        rel = rel.replace(os.sep, "/")
        parts = rel.split("/")
        for part in parts[:-1]:
            if part in self.by_msd:
                return self.by_msd[part]
        stem = Path(rel).with_suffix("").as_posix()
        for key in (rel.lower(), stem.lower(), VERSION_SUFFIX.sub("", stem).lower()):
            if key in self.by_path:
                return self.by_path[key]
        if len(parts) >= 2:
            title = VERSION_SUFFIX.sub("", Path(parts[-1]).stem)
            return self.by_artist_title.get((parts[-2].lower(), title.lower()))
        return None


def read_labels(path: str | os.PathLike) -> Labels:
    """Parse a labels file; a malformed line raises ``UserError`` naming the line."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"labels file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"labels file {p} is not UTF-8 text: {e}") from None
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines())]
    content = [(n, ln) for n, ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not content:
        raise UserError(f"labels file {p} has no labels")
    labels = Labels({}, {}, {})
    first = content[0][1].split("\t")[0].strip()
    if MSD_ID.match(first):  # tagtraum: MSD_TRACK_ID<TAB>genre[<TAB>minority genre]
        for n, ln in content:
            fields = [f.strip() for f in ln.split("\t")]
            if len(fields) < 2 or not MSD_ID.match(fields[0]) or not fields[1]:
                raise UserError(f"{p} line {n}: expected 'MSD_TRACK_ID<TAB>genre', got {ln!r}")
            labels.by_msd[fields[0]] = fields[1]
        return labels

    delim = "\t" if "\t" in content[0][1] else ","
    header = [h.strip().lower() for h in next(csv.reader([content[0][1]], delimiter=delim))]
    if header[:2] == ["path", "genre"] or (set(header) >= {"path", "genre"}):
        cols = ["path", "genre"]
    elif set(header) >= {"artist", "title", "genre"}:
        cols = ["artist", "title", "genre"]
    else:
        raise UserError(
            f"{p} line {content[0][0]}: header must be 'path,genre' or 'artist,title,genre' "
            f"(or the file must be tagtraum 'MSD_TRACK_ID<TAB>genre'), got {content[0][1]!r}"
        )
    idx = [header.index(c) for c in cols]
    for n, ln in content[1:]:
        row = next(csv.reader(io.StringIO(ln), delimiter=delim), [])
        if len(row) < len(header) or any(not row[i].strip() for i in idx):
            raise UserError(
                f"{p} line {n}: expected {len(header)} fields ({','.join(header)}), got {ln!r}"
            )
        vals = [row[i].strip() for i in idx]
        if cols[0] == "path":
            key = vals[0].replace("\\", "/").lstrip("./").lower()
            labels.by_path[key] = vals[1]
            labels.by_path[Path(key).with_suffix("").as_posix()] = vals[1]
        else:
            labels.by_artist_title[(vals[0].lower(), vals[1].lower())] = vals[2]
    return labels


# ----------------------------------------------------------------------------- listing


def list_source(spec: str, labels: Labels | None = None) -> list[SourceItem]:
    """List the songs of one SOURCE string, with labels applied. Raises ``UserError``."""
    named = GENRE_PREFIX.match(spec)
    if named and not Path(spec).expanduser().exists():  # a folder may itself be named "a=b"
        genre, inner = named.groups()
        return [replace(item, genre=genre) for item in list_source(inner, labels)]
    if spec.startswith("music21:"):
        return _list_music21(spec)
    root_str = spec[len("lakh:"):] if spec.startswith("lakh:") else spec
    root = Path(root_str).expanduser()
    if not root.exists():
        raise UserError(f"source not found: {root_str}")
    if not root.is_dir():
        raise UserError(f"source is not a folder: {root_str}")
    # everything named like MIDI, including what is not a regular file (a folder, a broken
    # link, a FIFO): the reader names those as skipped instead of silently passing them by
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in MIDI_SUFFIXES)
    if not files:
        raise UserError(f"no .mid/.midi files under {root_str}")
    lakh = spec.startswith("lakh:")
    items = []
    for f in files:
        rel = f.relative_to(root).as_posix()
        song = rel
        if lakh:
            parent = f.parent.name
            # lmd_matched: one MSD track may match several MIDI files; the track is the song.
            # clean_midi: "Title.1.mid" is another version of "Title.mid".
            song = parent if MSD_ID.match(parent) else VERSION_SUFFIX.sub("", rel[: -len(f.suffix)])
        genre = labels.lookup(rel) if labels else None
        items.append(SourceItem(spec, rel, str(f), f"{spec}::{song}", genre))
    return items


def music21_names() -> list[str]:
    """The corpus names ``music21:NAME`` accepts."""
    root = _music21_root()
    dirs = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name not in MUSIC21_SKIP)
    return sorted(set(dirs) | set(MUSIC21_ALIASES))


def _music21_root() -> Path:
    import music21.corpus

    return Path(music21.corpus.__file__).parent


def music21_cache_dir() -> Path:
    """Where converted music21 works are cached (``MTVAE_CACHE`` overrides)."""
    import music21
    from platformdirs import user_cache_dir

    base = os.environ.get("MTVAE_CACHE") or user_cache_dir("mtvae")
    return Path(base) / f"music21-{music21.__version__}"


ABC_TUNE = re.compile(r"^X:\s*(\d+)", re.MULTILINE)


def _list_music21(spec: str) -> list[SourceItem]:
    names = [n.strip() for n in spec[len("music21:"):].split(",") if n.strip()]
    if not names:
        raise UserError("music21: needs a corpus name, e.g. music21:bach")
    valid = music21_names()
    root = _music21_root()
    cache = music21_cache_dir()
    items = []
    for name in names:
        if name not in valid:
            raise UserError(f"unknown music21 corpus {name!r}; valid names: {', '.join(valid)}")
        folder = root / MUSIC21_ALIASES.get(name, name)
        files = sorted(
            f for f in folder.rglob("*") if f.suffix.lower() in MUSIC21_SUFFIXES and f.is_file()
        )
        for f in files:
            rel = f.relative_to(root).as_posix()
            tunes: list[int | None] = [None]
            if f.suffix.lower() == ".abc":  # an abc file holds many tunes: one item each
                tunes = sorted({int(x) for x in ABC_TUNE.findall(f.read_text(errors="replace"))})
            for n in tunes:
                key = rel if n is None else f"{rel}#{n}"
                out = cache / (key.replace("#", "_") + ".mid")
                items.append(
                    SourceItem(spec, key, str(out), f"music21:{key}", name, (str(f), n))
                )
    if not items:
        raise UserError(f"music21 corpus {', '.join(names)} has no works")
    return items


def materialize(item: SourceItem) -> Path:
    """Make sure the item's MIDI file exists (converting a music21 work once) and return it."""
    path = Path(item.path)
    if item.music21 is None or path.exists():
        return path
    src, number = item.music21
    score = _music21_parse(src, number)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        score.write("midi", fp=str(tmp))
        os.replace(tmp, path)  # atomic: a killed conversion never leaves a truncated file
    finally:
        tmp.unlink(missing_ok=True)  # an interrupted one (prepare's time limit) leaves nothing
    return path


def _music21_parse(src: str, number: int | None):
    """Parse a corpus file with music21 without its pickle cache: nothing is unpickled.

    By default music21's ``parseFile`` looks in its scratch folder (``<tempdir>/music21``
    unless the user set one: shared and world-writable) for ``m21-<version>-py<X.Y>-<md5 of the
    path>[-<number>].p.gz`` and, when that file is newer than the source, unpickles it instead
    of parsing the source; otherwise it parses the source and writes that pickle. Anyone who
    can write to the temp folder could plant one and run code in ``prepare``.
    ``forceSource=True`` skips both the read and the write (the scratch folder is not looked
    into); ``storePickle=False`` forbids the write on its own as well. ``parseFile``, not
    ``parse``: ``parse`` guesses from the string whether it is a path, a URL or data, and
    drops ``forceSource`` for (path, number) pairs."""
    from music21 import converter

    return converter.parseFile(src, number=number, forceSource=True, storePickle=False)
