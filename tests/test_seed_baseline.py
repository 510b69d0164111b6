"""bench/seed_baseline.py: the original study's baseline, end to end on a tiny DATA_DIR."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import symusic

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "seed_baseline.py"
sys.path.insert(0, str(ROOT / "bench"))
pytestmark = pytest.mark.slow  # a training run of the baseline in a subprocess


@pytest.fixture(scope="module")
def baseline_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("seed-baseline") / "run"
    cache = tmp_path_factory.mktemp("seed-cache")
    cmd = [sys.executable, str(SCRIPT), "--data", str(tiny_data), "--out", str(out),
           "--cache", str(cache), "--max-train-files", "5", "--max-eval-files", "2",
           "--max-steps", "3", "--samples", "2", "--sample-tokens", "16", "--val-every", "2"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    return out, cache, res.stdout


def test_summary(baseline_run):
    out, _, stdout = baseline_run
    s = json.loads((out / "summary.json").read_text())
    for key in ("parameters", "vocab_size", "train_tokens", "eval_tokens", "tokens_per_s",
                "train_minutes", "val_ce_first", "val_ce_best", "val_ce_last", "unigram_ce",
                "bigram_ce", "eval_unknown_share"):
        assert isinstance(s[key], (int, float)) and math.isfinite(s[key]), key
    assert s["steps"] == 3
    assert s["train_files"] == 5 and s["eval_files"] == 2
    assert s["parameters"] > 100_000 and s["vocab_size"] > 2
    assert s["kwargs_not_accepted"] == []
    assert s["model_kwargs"]["memory_layers"] == [5, 6] and s["model_kwargs"]["seq_len"] == 64
    # an untrained model is close to uniform over the vocabulary
    assert abs(s["val_ce_first"] - math.log(s["vocab_size"])) < 0.5
    known = s["known_targets"]
    for key in ("val_ce_first", "val_ce_last", "unigram_ce", "bigram_ce"):
        assert math.isfinite(known[key]), key
    assert 0 <= s["eval_unknown_share"] < 1
    # 65-token windows are one segment: memory never carried, compression never trained
    assert s["segments_per_window"] == 1
    assert s["aux_loss"]["segments"] == 3 and s["aux_loss"]["ever_nonzero"] is False
    assert "| vocabulary (incl. <unk>) |" in stdout


def test_metrics_csv(baseline_run):
    out, _, _ = baseline_run
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows if r["val_loss"]] == [0, 2, 3]
    train_rows = [r for r in rows if r["train_loss"]]
    assert train_rows
    for r in train_rows:
        assert math.isfinite(float(r["train_loss"])) and float(r["tokens_per_s"]) > 0
        assert float(r["aux_loss"]) == 0.0


def test_samples_have_fixed_note_length(baseline_run):
    out, _, _ = baseline_run
    files = sorted((out / "samples").glob("sample_*.mid"))
    assert [f.name for f in files] == ["sample_00.mid", "sample_01.mid"]
    for f in files:
        score = symusic.Score(f)
        assert len(score.tracks) == 1
        notes = score.tracks[0].notes
        assert 0 < len(notes)
        tpq = score.ticks_per_quarter
        assert {n.duration for n in notes} == {tpq}
        onsets = sorted({n.time for n in notes})
        assert onsets == [i * tpq for i in range(len(onsets))]  # one token per quarter note
        assert len(onsets) <= 16


def test_token_cache(baseline_run):
    _, cache, _ = baseline_run
    entries = [json.loads(p.read_text()) for p in cache.glob("*.json")]
    assert len(entries) == 7  # 5 train + 2 eval files
    assert all(e.get("tokens") for e in entries)


def test_decoding_and_midi(tmp_path):
    from seed_baseline import write_midi
    from seed_pipeline import tokens_to_notes

    toks = ["E4", "E-4", "4.7.11", "<unk>", "C#5"]
    assert tokens_to_notes(toks) == [[64], [63], [64, 67, 71], [], [73]]
    stats = write_midi(toks, tmp_path / "x.mid")
    assert stats == {"notes": 6, "onsets": 4, "skipped_tokens": 1}
    notes = symusic.Score(tmp_path / "x.mid").tracks[0].notes
    assert [(n.time, n.pitch) for n in notes] == [
        (0, 64), (480, 63), (960, 64), (960, 67), (960, 71), (1440, 73)]
    assert {(n.duration, n.velocity) for n in notes} == {(480, 80)}
