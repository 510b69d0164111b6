"""The main job on the built-in corpus, as ``make demo`` runs it: prepare, train, then write
four samples, one continuation, one interpolation, one reconstruction and one infilling
(original, gap, infilled) (MIDI, PNG, WAV each) and ``index.html``, a page with every piano roll, an audio player and the loss curve."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from .errors import UserError


def run_demo(out: str | Path, minutes: float = 5.0, source: str = "music21:bach",
             preset: str = "tiny", max_files: int | None = None, seed: int = 0,
             prior_steps: int | None = None) -> Path:
    """``make demo``: prepare ``source``, train ``preset`` for ``minutes`` (then fit the learnt
    prior, for at most ``prior_steps``: train's default unless given), write the gallery."""
    from .api import MusicVAE
    from .data import prepare
    from .data.pipeline import summarize
    from .evaluate import token_accuracy
    from .render import render
    from .train import train

    from . import validate as V

    V.number("minutes", minutes, 0.0, 10**6, lo_open=True)
    V.integer("max_files", max_files, 1, 10**9, allow_none=True)
    out = V.out_dir(out)
    data, run = out / "data", out / "run"
    print(f"== prepare {source}")
    print(summarize(prepare([source], data, max_files=max_files, seed=seed)))
    print(f"== train {preset} for {minutes} min")
    shutil.rmtree(run, ignore_errors=True)
    more = {} if prior_steps is None else {"prior_steps": prior_steps}
    train(data, run, preset=preset, max_minutes=minutes, quiet=True, val_every=100, seed=seed,
          **more)

    print("== generate")
    m = MusicVAE.load(run)
    songs = _held_out(data, 3)
    pieces = []  # (section, name, score, caption)
    for i, s in enumerate(m.sample(bars=8, n=4, seed=seed, temperature=0.9)):
        pieces.append(("Samples from the prior", f"sample_{i + 1}", s, f"8 bars, seed {seed + i}"))
    pieces.append(("Continuation", "continuation", m.continue_(songs[0], bars=4, seed=seed),
                   f"4 new bars after {Path(songs[0]).name}"))
    bars = min(4, *(len(m.read(p).bar_starts) for p in songs[1:3]))
    for k, s in enumerate(m.interpolate(songs[1], songs[2], steps=4, bars=bars, seed=seed)):
        pieces.append(("Interpolation", f"interp_{k + 1}", s,
                       f"step {k + 1}/4 from {Path(songs[1]).name} to {Path(songs[2]).name}"))
    acc = token_accuracy(m, songs[0], bars=8)
    pieces.append(("Reconstruction", "reconstruction", m.reconstruct(songs[0], bars=8, seed=seed),
                   f"{Path(songs[0]).name}, first 8 bars; teacher-forced token accuracy {acc:.3f}"))
    pieces += _infill_example(m, songs, seed)
    rows = []
    for section, name, score, caption, *shade in pieces:
        files = render(score, out / name, title=f"{name}: {caption}",
                       shade=shade[0] if shade else None)
        rows.append((section, name, caption, files))
    write_index(out, rows, run / "loss.png")
    print(f"== open {out / 'index.html'}")
    return out / "index.html"


def _infill_example(m, songs: list[str], seed: int) -> list[tuple]:
    """Bars 3-4 of the first held-out song of 6 bars or more: the original, the song with
    those bars blanked, and the song with them infilled (new bars shaded)."""
    song = next((p for p in songs if len(m.read(p).bar_starts) >= 6), None)
    if song is None or not m.can_infill:
        return []
    enc = m.read(song)
    blank = [bar[:2] if k in (2, 3) else bar  # Bar, TimeSig
             for k, bar in enumerate(enc.bar_tokens())]
    name, gap = Path(song).name, [(2, 4)]
    return [
        ("Infilling", "infill_original", m.tokenizer.decode(enc.ids.tolist()),
         f"{name} as the model reads it", gap),
        ("Infilling", "infill_gap", m.tokenizer.decode([t for b in blank for t in b]),
         f"{name} with bars 3-4 blanked", gap),
        ("Infilling", "infill_new", m.infill(song, "3-4", seed=seed),
         "bars 3-4 written again from the bars before and after them", gap),
    ]


def _held_out(data: Path, n: int) -> list[str]:
    """Songs for continuation / interpolation / reconstruction: test split first."""
    from .data import DataDir

    rows = DataDir(data).manifest()
    rows.sort(key=lambda r: (r["split"] != "test", r["split"] != "valid", r["path"]))
    files = [r["file"] for r in rows if int(r["bars"]) >= 4][:n]
    if len(files) < n:
        raise UserError(f"the corpus needs at least {n} songs of 4 bars or more")
    return files


def write_index(out: Path, rows: list, loss_png: Path | None) -> Path:
    """A self-contained page; every link is relative and points to a file that exists."""
    parts = ["<!doctype html><meta charset='utf-8'><title>mtvae demo</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
             "img{width:100%;border:1px solid #ddd}figure{margin:1.5em 0}</style>",
             "<h1>mtvae demo</h1>"]
    if loss_png is not None and loss_png.is_file():
        shutil.copyfile(loss_png, out / "loss.png")
        parts += ["<h2>Training</h2>", "<img src='loss.png' alt='loss curve'>"]
    section = None
    for sec, name, caption, files in rows:
        if sec != section:
            parts.append(f"<h2>{html.escape(sec)}</h2>")
            section = sec
        rel = {k: Path(v).name for k, v in files.items() if k in ("mid", "png", "wav")}
        parts.append(f"<figure><figcaption><b>{html.escape(name)}</b> — {html.escape(caption)} "
                     f"(<a href='{rel['mid']}'>MIDI</a>)</figcaption>")
        if "png" in rel:
            parts.append(f"<img src='{rel['png']}' alt='{html.escape(name)} piano roll'>")
        if "wav" in rel:
            parts.append(f"<audio controls src='{rel['wav']}'></audio>")
        parts.append("</figure>")
    (out / "index.html").write_text("\n".join(parts) + "\n")
    (out / "index.json").write_text(json.dumps([r[:3] + (r[3],) for r in rows], indent=2))
    return out / "index.html"
