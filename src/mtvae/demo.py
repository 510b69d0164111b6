"""``make demo``: music from the model that ships with mtvae, then a short fine-tune.

1. prepare a built-in corpus the shipped model never saw (Aird's Airs, in music21) as a new
   genre;
2. the shipped model's gallery: samples of each genre it knows, and on held-out airs a
   continuation, an interpolation, a reconstruction, an infilling (original, gap, infilled)
   and a genre transfer;
3. fine-tune the shipped model on the airs for a few minutes (``train --from``);
4. the fine-tuned model's samples of the new genre and the same continuation;

each piece as MIDI, piano roll and WAV, on ``index.html`` with the fine-tune's loss curve,
every caption naming the model that made it."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from .errors import UserError

DEMO_SOURCE = "airs=music21:airdsAirs"  # never in the shipped model's data


def run_demo(out: str | Path, minutes: float = 3.0, source: str = DEMO_SOURCE,
             model: str = "pretrained", max_files: int | None = 160, seed: int = 0,
             prior_steps: int = 300) -> Path:
    """Prepare ``source``, write ``model``'s gallery, fine-tune it on ``source`` for
    ``minutes`` (then fit its learnt prior for at most ``prior_steps``), write the fine-tuned
    model's pieces; returns index.html."""
    from .api import MusicVAE
    from .data import DataDir, prepare
    from .data.pipeline import summarize
    from .evaluate import token_accuracy
    from .render import render
    from .train import train

    from . import validate as V

    V.number("minutes", minutes, 0.0, 10**6, lo_open=True)
    V.integer("max_files", max_files, 1, 10**9, allow_none=True)
    out = V.out_dir(out)
    data, run = out / "data", out / "run"
    m = MusicVAE.load(model)
    who = "the shipped model" if str(model) == "pretrained" else f"the model in {model}"
    print(f"== {who}: samples of each genre")
    made = f"made by {who}"
    pieces = []  # (section, name, score, caption[, shaded bars])
    for g in [x for x in m.genres if x != "unknown"] or [None]:
        for i, s in enumerate(m.sample(bars=8, n=2, genre=g, seed=seed)):
            name = f"sample_{g or 'x'}_{i + 1}"
            pieces.append((f"Samples of each genre ({made})", name, s,
                           f"genre {g}, 8 bars, seed {seed + i}"))
    rows = _render_all(pieces, out, render)
    write_index(out, rows, None)  # a page to open while the rest is made

    print(f"== prepare {source}")
    print(summarize(prepare([source], data, max_files=max_files, seed=seed, workers=2)))
    songs = _held_out(data, 3)
    new_genre = next((g for g in DataDir(data).genres if g != "unknown"), None)

    print(f"== {who}: its music on songs it never saw")
    pieces = []
    first = Path(songs[0]).name
    pieces.append((f"Continuation ({made})", "continuation", m.continue_(songs[0], bars=4, seed=seed),
                   f"4 new bars after {first}, which it never saw"))
    bars = min(4, *(len(m.read(p).bar_starts) for p in songs[1:3]))
    for k, s in enumerate(m.interpolate(songs[1], songs[2], steps=4, bars=bars, seed=seed)):
        pieces.append((f"Interpolation ({made})", f"interp_{k + 1}", s,
                       f"step {k + 1}/4 from {Path(songs[1]).name} to {Path(songs[2]).name}"))
    acc = token_accuracy(m, songs[0], bars=8)
    pieces.append((f"Reconstruction ({made})", "reconstruction",
                   m.reconstruct(songs[0], bars=8, seed=seed),
                   f"{first}, first 8 bars from their latents; teacher-forced token accuracy "
                   f"{acc:.3f}"))
    pieces += [(f"{sec} ({made})", *rest) for sec, *rest in _infill_example(m, songs, seed)]
    other = next((g for g in m.genres if g not in ("unknown", new_genre)), None)
    if other is not None:
        pieces.append((f"Genre transfer ({made})", "transfer",
                       m.transfer(songs[0], genre=other, bars=8, seed=seed),
                       f"{first}, first 8 bars: its bar latents decoded as {other}"))
    rows += _render_all(pieces, out, render)
    write_index(out, rows, None)

    print(f"== fine-tune {who} on {source} for {minutes:g} min")
    shutil.rmtree(run, ignore_errors=True)
    summary = train(data, run, init_from=str(model), max_minutes=minutes, val_every=25,
                    seed=seed, prior_steps=prior_steps, batch_size=2, segments=4)
    print(f"   {summary['steps']} steps; validation {summary['best_val_bits_per_token']:.3f} "
          "bits per token at best")
    ft = MusicVAE.load(run)
    made = f"made by the fine-tuned model, {summary['steps']} steps on {source}"
    pieces = [(f"Samples of the new genre ({made})", f"tuned_{new_genre or 'x'}_{i + 1}", s,
               f"genre {new_genre}, 8 bars, seed {seed + i}")
              for i, s in enumerate(ft.sample(bars=8, n=2, genre=new_genre, seed=seed))]
    pieces.append((f"Continuation ({made})", "tuned_continuation",
                   ft.continue_(songs[0], bars=4, seed=seed), f"4 new bars after {first}"))
    rows += _render_all(pieces, out, render)
    write_index(out, rows, run / "loss.png")
    print(f"== open {out / 'index.html'}")
    return out / "index.html"


def _render_all(pieces: list[tuple], out: Path, render) -> list[tuple]:
    from tqdm import tqdm

    rows = []
    for section, name, score, caption, *shade in tqdm(pieces, desc="render", unit="piece"):
        files = render(score, out / name, title=f"{name}: {caption}",
                       shade=shade[0] if shade else None)
        rows.append((section, name, caption, files))
    return rows


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
        parts += ["<h2>The fine-tune's loss</h2>", "<img src='loss.png' alt='loss curve'>"]
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
