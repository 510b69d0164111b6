"""bench/gpu_train.sh, the script a lent GPU runs, kept from rotting: its --dry-run takes the
same path on the CPU (install check, peak, `mtvae train` with checkpoints, resume, report)."""

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_script_trains_resumes_and_reports_on_a_cpu(tiny_data, tmp_path):
    run, report = tmp_path / "run", tmp_path / "report.json"

    def go() -> dict:
        subprocess.run(["bash", str(ROOT / "bench" / "gpu_train.sh"), "--dry-run", str(tiny_data),
                        "0.05", str(run), "--json", str(report)], check=True, cwd=tmp_path,
                       capture_output=True, text=True)
        return json.loads(report.read_text())

    first = go()
    assert first["dry_run"] and not first["resumed"] and first["preset"] == "tiny"
    assert first["tokens_per_s"] > 0 and first["gflop_per_token"] > 0 and 0 < first["mfu"] < 1
    assert (run / "model.safetensors").exists() and (run / "training_state.pt").exists()
    second = go()  # the same run goes on
    assert second["resumed"] and second["last_step"] > first["last_step"]


def test_the_gpu_script_says_how_to_use_it():
    out = subprocess.run(["bash", str(ROOT / "bench" / "gpu_train.sh")], capture_output=True,
                         text=True)
    assert out.returncode == 2 and "--dry-run" in out.stdout
