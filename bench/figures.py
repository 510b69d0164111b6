"""Figures for docs/RESULTS.md.

    .venv/bin/python bench/figures.py curves runs/abl-* --out docs/img/ablations.png
    .venv/bin/python bench/figures.py overlap bench/results/eval_small.json \
        "mtvae small-long (2000 steps)=bench/results/eval_small_long.json" --out docs/img/overlap.png
    .venv/bin/python bench/figures.py latents RUN_DIR DATA_DIR --out docs/img/latents.png
    .venv/bin/python bench/figures.py interpolation RUN_DIR A.mid B.mid --out docs/img/interp.png
    .venv/bin/python bench/figures.py reconstructions RUN_DIR DATA_DIR --out docs/img/recon.png
    .venv/bin/python bench/figures.py infilling RUN_DIR DATA_DIR --out docs/img/infill.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mtvae.data import DataDir  # noqa: E402
from mtvae.run import RunDir  # noqa: E402


def curves(runs: list[Path], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run in runs:
        rows = [r for r in RunDir(run).metrics() if r["split"] == "valid"]
        ax.plot([int(r["step"]) for r in rows], [float(r["bits_per_token"]) for r in rows], "o-",
                ms=3, label=run.name)
    ax.set_xlabel("step")
    ax.set_ylabel("validation bits per token (ELBO)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def overlap(result_json: Path, out: Path, extra: list[str] = ()) -> None:
    """Overlap bars of every set in ``result_json``; ``extra``: "LABEL=OTHER.json" adds the
    mtvae set of another evaluation of the same split under LABEL."""
    result = json.loads(result_json.read_text())
    stats = result["music_statistics"]
    if extra:  # several mtvae sets: name this one after its run
        stats = {(f"mtvae {Path(result['run_dir']).name}" if k == "mtvae" else k): v
                 for k, v in stats.items()}
    for item in extra:
        label, _, path = item.partition("=")
        stats[label] = json.loads(Path(path).read_text())["music_statistics"]["mtvae"]
    names = list(stats)
    feats = list(stats[names[0]])
    x = np.arange(len(feats))
    w = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for k, n in enumerate(names):
        ax.bar(x + k * w, [stats[n][f]["overlap"] for f in feats], w, label=n)
    ax.set_xticks(x + w * (len(names) - 1) / 2, [f.replace("_", "\n") for f in feats], fontsize=7)
    ax.set_ylabel("overlap area with the test split (1 = same distribution)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def latents(run_dir: Path, data_dir: Path, out: Path, split: str = "test", songs: int = 60,
            bars: int = 16) -> None:
    from mtvae import MusicVAE

    m = MusicVAE.load(run_dir)
    rows = DataDir(data_dir).manifest(split)
    rng = np.random.default_rng(0)
    rows = [rows[i] for i in rng.permutation(len(rows))[:songs]]
    zs, labels = [], []
    for r in rows:
        z = m.encode(r["file"], bars).numpy()
        zs.append(z)
        labels += [r["genre"] or Path(r["source"]).name] * len(z)
    Z = np.concatenate(zs)
    Z = Z - Z.mean(0)
    _, s, vt = np.linalg.svd(Z, full_matrices=False)
    P = Z @ vt[:2].T
    fig, ax = plt.subplots(figsize=(6, 5))
    for lab in sorted(set(labels)):
        sel = np.asarray(labels) == lab
        ax.scatter(P[sel, 0], P[sel, 1], s=6, alpha=0.6, label=lab)
    var = s[:2] ** 2 / (s ** 2).sum()
    ax.set_xlabel(f"PC1 ({var[0]:.0%})")
    ax.set_ylabel(f"PC2 ({var[1]:.0%})")
    ax.set_title(f"bar latents (posterior means), {len(Z)} bars of {len(rows)} {split} songs",
                 fontsize=9)
    ax.legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def interpolation(run_dir: Path, a: str, b: str, out: Path, steps: int = 5, bars: int = 4) -> None:
    from mtvae import MusicVAE

    m = MusicVAE.load(run_dir)
    pieces = m.interpolate(a, b, steps=steps, bars=bars, seed=0, temperature=0.8)
    fig, axes = plt.subplots(1, steps, figsize=(3 * steps, 3), sharey=True)
    for k, (ax, s) in enumerate(zip(axes, pieces)):
        tpq = s.ticks_per_quarter
        for t in s.tracks:
            n = t.notes.numpy()
            if len(n["pitch"]):
                ax.barh(n["pitch"], n["duration"] / tpq, left=n["time"] / tpq, height=0.8)
        ax.set_title(f"t = {k / (steps - 1):.2f}", fontsize=9)
        ax.set_xlabel("beats")
    axes[0].set_ylabel("pitch")
    fig.suptitle(f"interpolation: {Path(a).name} → {Path(b).name}, first {bars} bars", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def _roll(ax, s, title: str, bars: list[float] | None = None) -> None:
    tpq = s.ticks_per_quarter
    for t in s.tracks:
        n = t.notes.numpy()
        if len(n["pitch"]):
            ax.barh(n["pitch"], n["duration"] / tpq, left=n["time"] / tpq, height=0.9)
    for b in bars or []:
        ax.axvline(b, color="0.75", lw=0.6, zorder=0)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)


def _test_songs(m, data_dir: Path, bars: int, n: int) -> list:
    """(name, first ``bars`` bars) of the first ``n`` test songs with that many bars, in a
    seeded order."""
    rows = DataDir(data_dir).manifest("test")
    out = []
    for i in np.random.default_rng(0).permutation(len(rows)):
        e = m.read(rows[i]["file"])
        if len(e.bar_starts) >= bars:
            out.append((Path(rows[i]["file"]).name, e.first_bars(bars)))
        if len(out) == n:
            break
    return out


def reconstructions(run_dir: Path, data_dir: Path, out: Path, bars: int = 8, n: int = 3,
                    guidance: float | None = None) -> None:
    """Three held-out songs (the first of evaluate's seeded order) beside their greedy
    reconstructions from the posterior means, and one latent swap (A decoded with B's latents),
    at latent guidance ``guidance`` (None: the model's default, as ``mtvae evaluate``)."""
    from mtvae import MusicVAE
    from mtvae import metrics as M
    from mtvae.generate import Plan

    m = MusicVAE.load(run_dir)
    greedy = m.sampling(temperature=0.0, guidance=guidance, seed=0)

    def decode(z, e):
        plan = Plan(m.conditions(z, e.rhythm, e.polyphony), len(e.rhythm), seed=0,
                    timesigs=[int(t) for t in e.timesigs])
        return m.decode([plan], greedy)[0]

    encs = _test_songs(m, data_dir, bars, n + 1)
    fig, axes = plt.subplots(n + 1, 3, figsize=(15, 2.6 * (n + 1)))
    for k, (name, e) in enumerate(encs[:n]):
        ref = m.tokenizer.decode(e.ids.tolist())
        rec = decode(m.encode(e), e)
        grid = None
        sim = M.bar_similarity(ref, rec, bars)
        _roll(axes[k, 0], ref, f"{name}: original, first {bars} bars", grid)
        _roll(axes[k, 1], rec, f"greedy reconstruction from z: chroma {sim['chroma']:.2f}, "
              f"groove {sim['groove']:.2f}, F1 {sim['note_f1']:.2f}", grid)
        axes[k, 2].axis("off")
    (na, a), (nb, b) = encs[0], encs[n]
    ra, rb = m.tokenizer.decode(a.ids.tolist()), m.tokenizer.decode(b.ids.tolist())
    sw = decode(m.encode(b), a)
    _roll(axes[n, 0], ra, f"A = {na}")
    _roll(axes[n, 1], rb, f"B = {nb}")
    (ca, ga), (cb, gb), (co, go) = (M.bar_profiles(x, bars) for x in (ra, rb, sw))
    follow = np.mean(M.row_cosine(co, cb) > M.row_cosine(co, ca))
    _roll(axes[n, 2], sw, f"A's attributes with B's latents: {follow:.0%} of bars closer to B "
          "in chroma")
    fig.suptitle(f"{run_dir.name}: held-out songs, greedy decoding from posterior means "
                 f"(latent guidance {greedy.guidance:g})", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def infilling(run_dir: Path, data_dir: Path, out: Path, gap: int = 4, n: int = 2,
              before: int = 4, after: int = 4) -> None:
    """Held-out songs (evaluate's seeded order): bars ``before+1 .. before+gap`` blanked, then
    the original, continuation that does not read what follows, and infilling (prior latents,
    the same seed), each with the gap shaded and its join NLL (the first kept bar's)."""
    from mtvae import MusicVAE
    from mtvae import metrics as M
    from mtvae.evaluate import join_nll

    m = MusicVAE.load(run_dir)
    picked = _test_songs(m, data_dir, before + gap + after, n)
    a, b = before, before + gap
    fig, axes = plt.subplots(n, 3, figsize=(15, 2.8 * n), squeeze=False)
    for k, (name, e) in enumerate(picked):
        orig = e.bar_tokens()
        versions = [("original", orig)]
        for label, see in (("continuation (reads bars before only)", False),
                           ("infill (reads bars before and after)", True)):
            versions.append((label, m.fill(e, [(a, b)], m.sampling(seed=0), see_after=see)[1]))
        ref = m.tokenizer.decode([t for bar in orig[a:b] for t in bar])
        for ax, (label, bars) in zip(axes[k], versions):
            s = m.tokenizer.decode([t for bar in bars for t in bar])
            beats = M._bars(s, s.end() / s.ticks_per_quarter + 1e-6)  # bar starts, in beats
            _roll(ax, s, "", list(beats))
            if len(beats) > b:
                ax.axvspan(beats[a], beats[b], color="gold", alpha=0.2, zorder=0)
            nll = join_nll(m, bars, e.rhythm, e.polyphony, e.timesigs, b)
            gap_s = m.tokenizer.decode([t for bar in bars[a:b] for t in bar])
            sim = M.bar_similarity(ref, gap_s, gap)
            ax.set_title(f"{name}: {label}\njoin NLL {nll:.2f} nats/token · gap chroma "
                         f"{sim['chroma']:.2f} groove {sim['groove']:.2f}", fontsize=8)
    fig.suptitle(f"{run_dir.name}: bars {a + 1}-{b} of held-out songs written again (shaded)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=("curves", "overlap", "latents", "interpolation",
                                     "reconstructions", "infilling"))
    ap.add_argument("args", nargs="+")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--guidance", type=float, default=None,
                    help="reconstructions: latent guidance (default: the model's, as evaluate)")
    a = ap.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    if a.kind == "curves":
        curves([Path(p) for p in a.args], a.out)
    elif a.kind == "overlap":
        overlap(Path(a.args[0]), a.out, a.args[1:])
    elif a.kind == "infilling":
        infilling(Path(a.args[0]), Path(a.args[1]), a.out)
    elif a.kind == "reconstructions":
        reconstructions(Path(a.args[0]), Path(a.args[1]), a.out, guidance=a.guidance)
    elif a.kind == "latents":
        latents(Path(a.args[0]), Path(a.args[1]), a.out)
    else:
        interpolation(Path(a.args[0]), a.args[1], a.args[2], a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
