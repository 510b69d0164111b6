"""No path of mtvae unpickles anything: converting a music21 work neither reads nor writes
music21's parse cache (``m21-*.p.gz`` pickles in its scratch folder, by default the shared,
world-writable ``<tempdir>/music21``)."""

import os
import pickle
import time
import zlib
from pathlib import Path

import pytest
from music21 import converter, environment

from mtvae.data import prepare
from mtvae.errors import UserError
from mtvae.data.sources import list_source, materialize

# three small works: two abc tunes (parsed with number=...) and one compressed MusicXML file
SOURCES = ["music21:nottingham", "music21:webern"]


class Planted:
    """Unpickling this creates the folder ``marker``: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def music21_pickle_path(item) -> Path:
    """Where music21's ``parseFile`` (without ``forceSource``) looks for its cached parse of
    this work, computed by music21 itself."""
    src, number = item.music21
    scratch = environment.Environment().getRootTempDir()
    return converter.PickleFilter(src, number=number).getPickleFp(scratch, zipType="gz")


@pytest.fixture
def works(tmp_path, monkeypatch):
    monkeypatch.setenv("MTVAE_CACHE", str(tmp_path / "cache"))  # nothing converted yet
    items = [item for spec in SOURCES for item in list_source(spec)]
    assert len(items) == 3
    paths = [music21_pickle_path(item) for item in items]
    yield items, paths
    for p in paths:
        p.unlink(missing_ok=True)


def test_a_planted_pickle_in_music21s_scratch_folder_is_never_loaded(works, tmp_path):
    items, paths = works
    markers = [tmp_path / f"code-ran-{n}" for n in range(len(items))]
    later = time.time() + 3600  # newer than the source file: music21 would trust it
    for path, marker in zip(paths, markers):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(zlib.compress(pickle.dumps(Planted(str(marker)))))  # thaw's format
        os.utime(path, (later, later))

    try:
        report = prepare(SOURCES, tmp_path / "data", max_files=3, workers=1, progress=False)
    except UserError as e:  # "no song left to keep": every work failed to convert
        report = {"error": str(e)}

    assert not [m.name for m in markers if m.exists()], "a planted pickle was unpickled"
    assert report.get("kept") == 3 and not report["skipped"], report


def test_converting_a_work_writes_no_pickle(works):
    items, paths = works
    for p in paths:
        p.unlink(missing_ok=True)
    for item in items:
        assert materialize(item).stat().st_size > 0
    assert not [p.name for p in paths if p.exists()]
