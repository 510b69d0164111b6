"""`pretrained` names the model that ships inside the package, wherever a RUN_DIR is read."""

from mtvae.cli import main
from mtvae.run import CONFIG, pretrained_dir


def test_pretrained_is_the_shipped_model_or_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no local folder named "pretrained"
    rc = main(["sample", "pretrained", "--bars", "1", "--out", str(tmp_path / "out")])
    if (pretrained_dir() / CONFIG).is_file():
        assert rc == 0 and list((tmp_path / "out").glob("*.mid"))
    else:
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "ships no pretrained model yet" in err[0]
