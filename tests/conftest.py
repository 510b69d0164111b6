"""Shared fixtures: the real MIDI in ../shared/data, a private music21 cache, the tiny
prepared DATA_DIR and the tiny trained run.

``make test`` runs the suite in two pytest-xdist workers, one core and one torch thread each
(two processes that each use every core slow each other down many times over; subprocesses
inherit the setting). ``make test-fast`` (``MTVAE_TEST_FAST=1``, ``-m "not slow"``) trains
the tiny run for a few steps only.
"""

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

FAST = os.environ.get("MTVAE_TEST_FAST", "") not in ("", "0")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MTVAE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.fail(f"test data missing: {p} (set MTVAE_SHARED_DATA to the shared/data folder)")
    return p


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    # music21 conversions go to a throw-away cache, not the user's
    os.environ["MTVAE_CACHE"] = str(tmp_path_factory.mktemp("mtvae-cache"))


@pytest.fixture(scope="session")
def pop909() -> list[Path]:
    return sorted(shared("pop909").glob("*.mid"))


@pytest.fixture(scope="session")
def nottingham() -> list[Path]:
    return sorted(shared("nottingham").glob("*.mid"))


@pytest.fixture(scope="session")
def bad_midi() -> Path:
    return shared("bad-midi")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, pop909, nottingham) -> Path:
    """A small prepared DATA_DIR of real songs (folk tunes and pop piano), built once."""
    from mtvae.data import prepare

    folder = tmp_path_factory.mktemp("songs")
    for p in nottingham[:24] + pop909[:6]:
        (folder / p.name).symlink_to(p)
    out = tmp_path_factory.mktemp("data") / "d"
    prepare([str(folder)], out, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """The default design (every setting at its default but the preset and the budget),
    trained briefly on tiny_data, with its learnt prior fitted at the end, as train does."""
    from mtvae.train import train

    run = tmp_path_factory.mktemp("runs") / "tiny"
    steps = 12 if FAST else 100
    train(tiny_data, run, preset="tiny", max_steps=steps, val_every=steps // 2, batch_size=4,
          segments=2, prior_steps=30 if FAST else 300, quiet=True, device="cpu")
    return run
