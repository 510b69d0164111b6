"""mtvae evaluate end to end on a tiny model: every field of the JSON is there."""

import json
import math

from mtvae.cli import main


def test_evaluate_writes_every_field(tiny_run, tiny_data, tmp_path, capsys):
    out = tmp_path / "eval.json"
    samples = tmp_path / "other"
    samples.mkdir()
    assert main(["sample", str(tiny_run), "--bars", "2", "--n", "2", "--seed", "3", "--no-audio",
                 "--out", str(samples), "--quiet"]) == 0
    code = main(["evaluate", str(tiny_run), str(tiny_data), "--split", "test", "--samples", "2",
                 "--bars", "2", "--max-windows", "4", "--json", str(out), "--quiet",
                 "--compare", f"other={samples}", "--top-k", "40"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "bits per token" in printed and "Spearman" in printed
    r = json.loads(out.read_text())
    assert r["sampling"] == {"temperature": 1.0, "top_k": 40, "top_p": None}
    lk = r["likelihood"]
    for key in ("bits_per_token", "bits_per_note", "elbo_nats_per_token", "kl_nats_per_bar",
                "teacher_forced_token_accuracy", "active_units"):
        assert math.isfinite(lk[key]), key
    assert lk["bits_per_note"] > lk["bits_per_token"]  # several tokens per note
    for mode in ("teacher_forced", "sampled"):
        assert 0 <= r["reconstruction"][mode]["token_accuracy"] <= 1
        assert 0 <= r["reconstruction"][mode]["note_f1"] <= 1
    for attr in ("rhythm", "polyphony"):
        assert len(r["control"][attr]["mean_measured_class"]) == 8
    stats = r["music_statistics"]
    assert set(stats) == {"mtvae", "train (ceiling)", "other"}
    for name in stats:
        assert {"pitch_range", "polyphony", "groove_consistency", "scale_consistency",
                "empty_bar_rate", "pitch_class_histogram"} <= set(stats[name])
    mem = r["memorisation"]["longest_copied_run"]
    assert 0 <= mem["median"] <= mem["max"]
