"""Render: a score to MIDI, a piano-roll PNG and a WAV.

Audio uses FluidSynth with a General MIDI soundfont when both are present (Debian packages
``fluidsynth`` and ``fluid-soundfont-gm``); otherwise a small built-in additive synthesiser
writes the WAV and a one-line note says how to get the real one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np
import symusic

from .checkpoint import atomic_write
from .errors import UserError

MAX_AUDIO_MINUTES = 30  # a WAV longer than this is refused (memory and disk stay bounded)
SYNTH_NOTE_SECONDS = 2000.0  # the built-in synthesiser's budget of note-seconds per piece
# FluidSynth renders ~30x real time on a quiet core, far slower on dense hostile input: it is
# used for pieces up to these sizes and given at most FLUIDSYNTH_SECONDS; beyond either, the
# bounded built-in synthesiser writes the WAV (with a one-line note)
FLUIDSYNTH_MAX_MINUTES = 5
FLUIDSYNTH_MAX_NOTES = 20_000
FLUIDSYNTH_SECONDS = 20

SOUNDFONTS = ["/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2",
              "/usr/share/soundfonts/default.sf2"]
_warned = False


def find_soundfont() -> str | None:
    for p in [os.environ.get("MTVAE_SOUNDFONT")] + SOUNDFONTS:
        if p and Path(p).is_file():
            return p
    return None


def bar_ticks(score: symusic.Score) -> list[int]:
    from miditok.utils import get_bars_ticks

    return list(get_bars_ticks(score, only_notes_onsets=True))


def check_drawable(score: symusic.Score, wav: bool = True) -> None:
    """Refuse, with one line, a score whose audio would be unboundedly long. (Scores come
    through the MIDI reader, which already bounds bars, notes and tracks.)"""
    if score.ticks_per_quarter < 1:
        raise UserError("the score has a division of 0 ticks per quarter note")
    if wav:
        seconds = float(score.to("second").end())
        if seconds > 60 * MAX_AUDIO_MINUTES:
            raise UserError(f"the piece lasts {seconds / 60:.0f} minutes at its tempos; WAV "
                            f"rendering is limited to {MAX_AUDIO_MINUTES} (use --png only)")


def piano_roll(score: symusic.Score, path: str | Path, title: str = "",
               shade: list[tuple[int, int]] | None = None) -> None:
    """Draw the notes, one colour per track, bar lines in grey; ``shade``: bar ranges
    [(start, stop)], numbered from 0, drawn on a tinted background (e.g. infilled bars)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    # a Figure of its own, not pyplot's global ones: the studio draws in several threads
    tpq = score.ticks_per_quarter
    fig = Figure(figsize=(12, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colours = matplotlib.colormaps["tab10"]
    handles = []
    for k, track in enumerate(t for t in score.tracks if t.note_num()):
        c = colours(k % 10)
        notes = track.notes.numpy()
        # one collection per track: memory and time linear in notes, unlike a patch per note
        x0 = notes["time"] / tpq
        x1 = x0 + notes["duration"] / tpq
        y0 = notes["pitch"] - 0.4
        y1 = y0 + 0.8
        verts = np.stack([np.stack([x0, y0], -1), np.stack([x0, y1], -1),
                          np.stack([x1, y1], -1), np.stack([x1, y0], -1)], axis=1)
        ax.add_collection(PolyCollection(verts, facecolors=[c], edgecolors="none"))
        kind = "drums" if track.is_drum else f"program {track.program}"
        name = f"{track.name} ({kind})" if track.name else kind
        handles.append(Patch(color=c, label=name))
    ticks = bar_ticks(score)
    for b in ticks:
        ax.axvline(b / tpq, color="0.75", lw=0.6, zorder=0)
    for a, b in shade or []:
        if a < len(ticks):
            end = ticks[b] if b < len(ticks) else max(score.end(), ticks[-1] + 1)
            ax.axvspan(ticks[a] / tpq, end / tpq, color="gold", alpha=0.18, zorder=0, lw=0)
    ax.autoscale_view()
    ax.set_xlabel("beats (quarter notes)")
    ax.set_ylabel("MIDI pitch")
    if handles:
        ax.legend(handles=handles[:12], loc="upper right", fontsize=7, ncol=2)
    ax.set_title(title or "piano roll", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def synthesize(score: symusic.Score, rate: int = 22050) -> np.ndarray:
    """A plain additive synthesiser: a few harmonics and an exponential decay per note."""
    s = score.to("second")
    end = max((n.time + n.duration for t in s.tracks for n in t.notes), default=0.0) + 0.5
    end = min(end, 60 * MAX_AUDIO_MINUTES)
    out = np.zeros(int(end * rate) + 1, dtype=np.float32)
    # at most SYNTH_NOTE_SECONDS of note sound in all: dense pieces get shorter decays
    cap = min(4.0, max(0.05, SYNTH_NOTE_SECONDS / max(score.note_num(), 1)))
    for track in s.tracks:
        for n in track.notes:
            a, length = int(n.time * rate), max(int(min(n.duration, cap) * rate), 64)
            t = np.arange(length) / rate
            if track.is_drum:  # a short noise burst
                wave_ = np.random.default_rng(n.pitch).standard_normal(length) * np.exp(-t * 30)
            else:
                f = 440.0 * 2 ** ((n.pitch - 69) / 12)
                wave_ = sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3))
                wave_ *= np.exp(-t * 3) * np.minimum(1, t * 200)
            seg = out[a:a + length]
            seg += (n.velocity / 127) * 0.2 * wave_[:len(seg)].astype(np.float32)
    peak = np.abs(out).max()
    return out / peak * 0.9 if peak > 0 else out


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGKILL when the process that started it dies (no orphans)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: nothing to do
        pass


def _fluidsynth(score: symusic.Score, path: Path, sf: str) -> str | None:
    """Render with FluidSynth within its budget; None (and nothing written) if it cannot."""
    minutes = float(score.to("second").end()) / 60
    if minutes > FLUIDSYNTH_MAX_MINUTES or score.note_num() > FLUIDSYNTH_MAX_NOTES:
        return f"the piece is too long for FluidSynth ({minutes:.1f} minutes, {score.note_num()} notes)"
    with tempfile.TemporaryDirectory() as d:
        mid, wav = Path(d) / "in.mid", Path(d) / "out.wav"
        score.dump_midi(mid)
        try:
            subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", "44100", "-F", str(wav),
                            # only the instruments the piece plays are read from the soundfont
                            "-o", "synth.dynamic-sample-loading=1", sf, str(mid)], check=True, capture_output=True,
                           timeout=FLUIDSYNTH_SECONDS, preexec_fn=_die_with_parent)
        except subprocess.TimeoutExpired:
            return f"FluidSynth took longer than {FLUIDSYNTH_SECONDS} s"
        except (subprocess.CalledProcessError, OSError) as e:
            text = getattr(e, "stderr", b"") or b""
            return f"FluidSynth failed ({' '.join(text.decode(errors='replace').split())[:120] or e})"
        atomic_write(path, lambda tmp: shutil.copyfile(wav, tmp))
    return None


def write_wav(score: symusic.Score, path: str | Path, quiet: bool = False) -> str:
    """Write a WAV; returns the renderer used ("fluidsynth" or "builtin")."""
    global _warned
    path = Path(path)
    sf = find_soundfont()
    why = None
    if shutil.which("fluidsynth") and sf:
        why = _fluidsynth(score, path, sf)
        if why is None:
            return "fluidsynth"
    audio = (synthesize(score) * 32767).astype(np.int16)

    def write(tmp):
        with wave.open(tmp, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(22050)
            w.writeframes(audio.tobytes())
    atomic_write(path, write)
    if why and not quiet:
        print(f"note: {why}: the WAV comes from the built-in synthesiser", file=sys.stderr)
    elif not quiet and not _warned:
        print("note: FluidSynth or a GM soundfont is missing, so the WAV comes from a simple "
              "built-in synthesiser (apt-get install fluidsynth fluid-soundfont-gm for real "
              "instruments)", file=sys.stderr)
        _warned = True
    return "builtin"


def render(score: symusic.Score, stem: str | Path, title: str = "", wav: bool = True,
           png: bool = True, shade: list[tuple[int, int]] | None = None) -> dict[str, str]:
    """Write stem.mid, stem.png and stem.wav; return their paths (``shade``: see piano_roll)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = {"mid": str(stem.with_suffix(".mid"))}
    atomic_write(out["mid"], lambda tmp: score.dump_midi(tmp))
    if png:
        out["png"] = str(stem.with_suffix(".png"))
        piano_roll(score, out["png"], title, shade)
    if wav:
        try:
            check_drawable(score, wav=True)
        except UserError as e:
            print(f"note: no WAV for {stem.name}: {e}", file=sys.stderr)
            return out
        out["wav"] = str(stem.with_suffix(".wav"))
        out["audio"] = write_wav(score, out["wav"])
    return out


def plot_losses(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = [r for r in history if r["split"] == "train"]
    va = [r for r in history if r["split"] == "valid"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([r["step"] for r in tr], [r["ce"] for r in tr], lw=0.8, label="train cross-entropy")
    ax.plot([r["step"] for r in va], [r["loss"] for r in va], "o-", label="validation loss (ELBO)")
    ax.set_xlabel("step")
    ax.set_ylabel("nats per token")
    ax2 = ax.twinx()
    ax2.plot([r["step"] for r in tr], [r["kl"] for r in tr], color="tab:green", lw=0.6,
             alpha=0.7, label="KL per bar")
    ax2.plot([r["step"] for r in tr], [r["beta"] for r in tr], color="tab:red", lw=0.8,
             ls="--", label="β")
    ax2.set_ylabel("KL (nats per bar) · β")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right", fontsize=8)
    ax.set_title("mtvae training")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
