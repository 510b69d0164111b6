"""Training: files written, resume equals an uninterrupted run, early stopping, bad input,
and a 2-process torchrun (gloo) that keeps both ranks identical."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mtvae import train as train_module
from mtvae.cli import main
from mtvae.config import RunConfig

FAST = dict(preset="tiny", batch_size=4, segments=2, val_every=5, quiet=True, device="cpu",
            prior_steps=0)  # the learnt prior has its own tests (test_prior.py)


def weights(path):
    return load_file(str(path))


def test_a_run_writes_its_files(tiny_data, tmp_path):
    run = tmp_path / "run"
    summary = train_module.train(tiny_data, run, max_steps=10, **FAST)
    for name in ("config.json", "model.safetensors", "last.safetensors", "training_state.pt",
                 "metrics.csv", "loss.png", "summary.json", "tokenizer.json"):
        assert (run / name).is_file(), name
    cfg = RunConfig.load(run / "config.json")
    assert cfg.model.d_model == 64 and cfg.train.max_steps == 10
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["step"] for r in rows if r["split"] == "valid"] == ["5", "10"]
    assert summary["steps"] == 10
    # ten steps lower the validation loss well below the untrained model's: the same run with
    # lr 0 keeps the initial weights (same seed, same validation windows and noise), so its
    # validation loss is the untrained one (about ln(vocab) = 6.25 nats). Seeds 0-3 drop by
    # 0.26-0.36 nats.
    untrained = train_module.train(tiny_data, tmp_path / "untrained", max_steps=5, lr=0.0, **FAST)
    assert summary["best_val_loss"] < untrained["best_val_loss"] - 0.15


def test_resume_matches_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    train_module.train(tiny_data, whole, max_steps=10, **FAST)

    split = tmp_path / "split"
    real_step = train_module.Trainer.train_step

    def killed_after_step_5(self):
        if self.step == 5:
            raise KeyboardInterrupt  # the process dies after the step-5 checkpoint
        return real_step(self)

    monkeypatch.setattr(train_module.Trainer, "train_step", killed_after_step_5)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(tiny_data, split, max_steps=10, **FAST)
    monkeypatch.setattr(train_module.Trainer, "train_step", real_step)
    assert torch.load(split / "training_state.pt", weights_only=True)["step"] == 5
    summary = train_module.train(tiny_data, split, resume=True, **FAST)
    assert summary["steps"] == 10

    a, b = weights(whole / "last.safetensors"), weights(split / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = lambda run: [r for r in csv.DictReader(open(run / "metrics.csv"))]  # noqa: E731
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("tokens_per_s", "elapsed_s")}
                        for r in rs]  # noqa: E731
    assert strip(rows(whole)) == strip(rows(split))


def test_early_stopping_when_validation_stops_improving(tiny_data, tmp_path):
    # lr 0: the validation loss never improves after the first validation
    summary = train_module.train(tiny_data, tmp_path / "run", max_steps=100, patience=2, lr=0.0,
                                 **FAST)
    assert summary["stopped"] == "early_stopping" and summary["steps"] == 15


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()


def test_bad_input_gives_one_line_and_exit_code_2(tiny_data, tmp_path, capsys):
    code, err = run_cli(capsys, "train", tmp_path / "nope", "--out", tmp_path / "r")
    assert code == 2 and len(err) == 1 and "DATA_DIR not found" in err[0]

    old = tmp_path / "old"
    old.mkdir()
    (old / "meta.json").write_text(json.dumps({"format_version": 0}))
    code, err = run_cli(capsys, "train", old, "--out", tmp_path / "r")
    assert code == 2 and len(err) == 1 and "incompatible" in err[0]

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "config.json").write_text("{}")
    (existing / "training_state.pt").write_bytes(b"a checkpoint")
    code, err = run_cli(capsys, "train", tiny_data, "--out", existing)
    assert code == 2 and len(err) == 1 and "--resume" in err[0]
    stranger = tmp_path / "stranger"  # a folder that is not a run is never taken over
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    code, err = run_cli(capsys, "train", tiny_data, "--out", stranger)
    assert code == 2 and len(err) == 1 and "already exists" in err[0]

    code, err = run_cli(capsys, "train", tiny_data, "--out", tmp_path / "r2", "--resume")
    assert code == 2 and len(err) == 1

    if not torch.cuda.is_available():
        code, err = run_cli(capsys, "train", tiny_data, "--out", tmp_path / "r3", "--device", "cuda")
        assert code == 2 and len(err) == 1 and "no CUDA GPU" in err[0]


@pytest.mark.slow
def test_torchrun_two_processes_keep_identical_weights(tiny_data, tmp_path):
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port=29533", "-m", "mtvae", "train", str(tiny_data), "--out", str(run),
           "--preset", "tiny", "--max-steps", "4", "--val-every", "2", "--batch-size", "2",
           "--segments", "2", "--device", "cpu", "--quiet", "--prior-steps", "0"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    a, b = summary["rank_weight_checksums"]
    assert a == b and summary["steps"] == 4
