"""Write the shipped model's card (src/mtvae/pretrained/MODEL_CARD.md) from what measured it:
the training run's metrics.csv (steps, token positions seen, wall hours, the learning curve)
and one ``mtvae evaluate --json`` per corpus (the test split of each genre). Every figure in
the card is copied from those files; nothing is typed in by hand.

    .venv/bin/python bench/model_card.py --train-run runs/ship --model src/mtvae/pretrained \\
        --eval pop=bench/results/ship_eval_pop.json --eval chorale=... --eval folk=... \\
        --curve docs/img/ship_curve.png
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from mtvae.run import RunDir

SOURCES = {  # genre: (what, where it comes from, licence)
    "pop": ("POP909: 909 Chinese pop songs arranged for piano (melody, bridge, piano)",
            "github.com/music-x-lab/POP909-Dataset", "MIT"),
    "chorale": ("J. S. Bach's four-part chorales (music21:bach)",
                "the corpus inside music21", "public domain music; encodings distributed with "
                "music21 (BSD) with their encoders' permission"),
    "folk": ("O'Neill's Music of Ireland and Ryan's Mammoth Collection, ABC transcriptions "
             "(music21:oneills,ryans)", "the corpus inside music21",
             "public domain music (1850s-1900s collections); encodings distributed with "
             "music21 (BSD)"),
}
LEFT_OUT = [
    ("Nottingham folk tunes", "GPLv3: whether weights trained on it may ship under MIT is not "
     "settled; used only as an unseen corpus in tests"),
    ("Essen folk-song collection (music21:essen)", "its terms of use are unclear for "
     "redistributed derivatives"),
    ("Aird's Airs (music21:airdsAirs)", "kept out on purpose: the corpus `make demo` fine-tunes "
     "on, which the shipped model has never seen"),
]


def sessions(rows: list[dict]) -> list[float]:
    """Wall seconds of each training process (elapsed_s restarts on every resume)."""
    out, last = [], 0.0
    for r in rows:
        e = float(r["elapsed_s"])
        if e < last:
            out.append(last)
        last = e
    return out + [last]


def curve(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    val = [r for r in rows if r["split"] == "valid"]
    tr = [r for r in rows if r["split"] == "train"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot([int(r["step"]) for r in tr], [float(r["ce"]) / math.log(2) for r in tr], lw=0.6,
            alpha=0.5, label="train reconstruction (bits/token)")
    ax.plot([int(r["step"]) for r in val], [float(r["bits_per_token"]) for r in val], "o-", ms=3,
            label="validation ELBO (bits/token)")
    ax.set_xlabel("step")
    ax.set_ylim(0, 8)
    ax.grid(alpha=0.3)
    lr = ax.twinx()  # the schedule, which a resume may shorten (--max-steps)
    lr.plot([int(r["step"]) for r in tr], [float(r["lr"]) for r in tr], color="0.4", lw=0.8,
            ls="--", label="learning rate (right)")
    lr.set_ylim(0, None)
    lr.set_ylabel("learning rate")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = lr.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="center right")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def f3(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def card(train_run: Path, model: Path, evals: dict[str, dict], curve_rel: str | None,
         weaknesses: list[str] = (), notes: list[str] = ()) -> str:
    run = RunDir(train_run)
    rows = run.metrics()
    cfg = RunDir(model).config
    t, m = cfg.train, cfg.model
    val = [r for r in rows if r["split"] == "valid"]
    best = min(val, key=lambda r: float(r["loss"]))
    steps = int(rows[-1]["step"])
    per_step = t.batch_size * t.segments * m.seg_len
    hours = sum(sessions(rows)) / 3600
    any_eval = next(iter(evals.values()))
    size = sum(f.stat().st_size for f in model.iterdir() if f.suffix == ".safetensors")
    L = [
        "# mtvae `pretrained`: model card", "",
        "The model that ships inside the package: `MusicVAE.load(\"pretrained\")`, "
        "`mtvae sample pretrained --genre pop --bars 16`, `mtvae studio`, and the start of "
        "`mtvae train DATA_DIR --out RUN --from pretrained`. This file is written by "
        "`bench/model_card.py` from the training run's metrics and `mtvae evaluate`'s JSON; "
        "do not edit its figures by hand.", "",
        "## The model", "",
        f"- mtvae `{t.preset}` preset: {any_eval['parameters'] / 1e6:.2f}M parameters, "
        f"d_model {m.d_model}, {m.n_heads} heads, encoder {m.enc_layers} / decoder "
        f"{m.dec_layers} layers, latent {m.d_latent} per bar, segments of {m.seg_len} tokens, "
        f"memory {m.mem_len} + compressed memory {m.cmem_len} (ratio {m.cmem_ratio}).",
        f"- Genres: {', '.join(cfg.data['genres'])} (`unknown` is the default when none is "
        "asked). REMI+ tokens (miditok 3.1, vocabulary "
        f"{m.vocab_size}); a learnt prior over bar latents ships beside the weights.",
        f"- Files: float16 safetensors, {size / 2**20:.1f} MiB for model and prior; weights "
        f"hash `{any_eval['model_hash']}`.", "",
        "## Data and licences", "",
        "| genre | source | where | licence |", "|---|---|---|---|",
    ]
    for g, (what, where, lic) in SOURCES.items():
        L.append(f"| {g} | {what} | {where} | {lic} |")
    L += ["", "Left out:", ""] + [f"- {name}: {why}." for name, why in LEFT_OUT]
    L += ["", "Splits are 90/5/5 by each file's content hash (`mtvae prepare`).", "",
          "## Training", "",
          f"- {steps:,} steps of {t.batch_size} windows × {t.segments} segments × "
          f"{m.seg_len} tokens: {steps * per_step / 1e6:.1f}M token positions seen "
          f"(augmented: transposed ±{t.transpose}, tempo jitter {t.tempo_jitter}; "
          f"{t.infill:.0%} of windows arranged for infilling).",
          f"- Hardware: one 2-core x86 CPU (no GPU), {hours:.1f} wall hours in "
          f"{len(sessions(rows))} runs of `mtvae train`, each resuming the last (`--resume`).",
          f"- Schedule: AdamW lr {t.lr:g}, cosine to {t.min_lr_ratio:g}× over {t.max_steps} "
          f"steps; β warm-up over {t.beta_warmup_steps} steps, free bits {t.free_bits:g}.",
          f"- Best validation ELBO {float(best['bits_per_token']):.3f} bits per token at step "
          f"{best['step']} (the weights shipped); last validation "
          f"{float(val[-1]['bits_per_token']):.3f} at step {val[-1]['step']}."]
    L += [f"- {n}" for n in notes] + [""]
    if curve_rel:
        L += [f"![learning curve]({curve_rel})", ""]
    L += ["## Evaluation (`mtvae evaluate`, each corpus's test split)", "",
          "Prior samples with the matching `--genre`; reconstruction of the first "
          f"{any_eval['bars']} bars; guidance {any_eval['guidance']:g}. Command: "
          "`mtvae evaluate pretrained data/ship --genre G --json F` "
          "(data/ship: `mtvae prepare pop=../shared/data/pop909 chorale=music21:bach "
          "folk=music21:oneills,ryans --out data/ship`).", ""]
    names = list(evals)
    head = "| figure | " + " | ".join(names) + " | target |"
    L += [head, "|---|" + "---:|" * len(names) + "---|"]

    def row(label, fn, target=""):
        cells = []
        for n in names:
            try:
                cells.append(fn(evals[n]))
            except (KeyError, TypeError, IndexError):
                cells.append("–")
        L.append(f"| {label} | " + " | ".join(cells) + f" | {target} |")

    row("test songs · tokens", lambda e: f"{e['likelihood']['tokens']:,}")
    row("bits per token (ELBO)", lambda e: f3(e["likelihood"]["bits_per_token"]))
    row("… with the learnt prior", lambda e: f3(e["likelihood"]["learnt_prior"]["bits_per_token"]))
    row("KL nats per bar", lambda e: f"{e['likelihood']['kl_nats_per_bar']:.1f}")
    for k, target in (("chroma", "≥ 0.85"), ("groove", "≥ 0.85"), ("note_f1", "≥ 0.5")):
        row(f"greedy reconstruction {k}", lambda e, k=k: f3(e["reconstruction"]["greedy"][k]), target)
        row(f"… against the MIDI file's notes", lambda e, k=k: f3(e["reconstruction"]["greedy_vs_file"][k]))
        row(f"… floor (an unrelated song)", lambda e, k=k: f3(e["reconstruction"]["floor"][k]))
    row("latent swap: chroma follows the donor",
        lambda e: f"{e['reconstruction']['latent_swap']['chroma_follows_donor']:.0%}", "≥ 80%")
    row("control ρ rhythm", lambda e: f3(e["control"]["rhythm"]["spearman_rho"]), "≥ 0.85")
    row("control ρ polyphony", lambda e: f3(e["control"]["polyphony"]["spearman_rho"]), "≥ 0.7")

    def overlap(e, who, fn):
        ms = e["music_statistics"][who]
        return fn([v["overlap"] for v in ms.values()])

    row("music statistics: lowest overlap", lambda e: f3(overlap(e, "mtvae", min)), "≥ 0.75")
    row("music statistics: mean overlap",
        lambda e: f3(overlap(e, "mtvae", lambda v: sum(v) / len(v))), "≥ 0.82")
    row("… the train split's own (ceiling)",
        lambda e: f3(overlap(e, "train (ceiling)", lambda v: sum(v) / len(v))))
    row("longest run copied from train (max tokens)",
        lambda e: f"{e['memorisation']['longest_copied_run']['max']:.0f}")
    L += ["", "Per feature (overlap of prior samples with the test split):", "",
          "| feature | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    feats = list(evals[names[0]]["music_statistics"]["mtvae"])
    for f in feats:
        L.append(f"| {f} | " + " | ".join(
            f3(evals[n]["music_statistics"]["mtvae"][f]["overlap"]) for n in names) + " |")
    L += ["", "## Known weaknesses", ""]
    L += [f"- {w}" for w in weaknesses]
    L += ["- Trained for hours on a 2-core CPU, not days on GPUs: the targets above that are "
          "missed are missed by the margin shown; see docs/RESULTS.md for the curves.",
          "- Folk and chorale songs are short (a few hundred tokens): long-range structure is "
          "learnt from POP909 alone.",
          "- Piano-centred: POP909 is piano arrangements, the chorales and folk tunes are "
          "rendered with one program; other instruments are rarely written.",
          "- Genres are corpora, not styles: `--genre` moves texture and idiom toward a corpus.",
          ""]
    return "\n".join(L)


def results_table(evals: dict[str, dict]) -> str:
    """docs/RESULTS.md's table of the shipped model (the same JSON as the card)."""
    names = list(evals)
    L = ["| figure | " + " | ".join(names) + " | target |", "|---|" + "---:|" * len(names) + "---|"]

    def row(label, fn, target=""):
        L.append(f"| {label} | " + " | ".join(fn(evals[n]) for n in names) + f" | {target} |")

    def trio(e, key):
        r = e["reconstruction"][key]
        return " / ".join(f3(r[k]) for k in ("chroma", "groove", "note_f1"))

    def overlap(e, who):
        v = [x["overlap"] for x in e["music_statistics"][who].values()]
        return f"{f3(min(v))} · {f3(sum(v) / len(v))}"

    row("test tokens", lambda e: f"{e['likelihood']['tokens']:,}")
    row("ELBO bits/token · with the learnt prior", lambda e: (
        f"{f3(e['likelihood']['bits_per_token'])} · "
        f"{f3(e['likelihood']['learnt_prior']['bits_per_token'])}"))
    row("reconstruction nats/token · KL nats/bar", lambda e: (
        f"{f3(e['likelihood']['reconstruction_nats_per_token'])} · "
        f"{e['likelihood']['kl_nats_per_bar']:.1f}"))
    row("greedy reconstruction chroma / groove / note F1", lambda e: trio(e, "greedy"),
        "0.85 / 0.85 / 0.5")
    row("… against the MIDI file's notes", lambda e: trio(e, "greedy_vs_file"))
    row("… sampled, T = 1", lambda e: trio(e, "sampled"))
    row("… floor: an unrelated song", lambda e: trio(e, "floor"))
    row("latent swap (chroma follows the donor)",
        lambda e: f"{e['reconstruction']['latent_swap']['chroma_follows_donor']:.0%}", "80%")
    row("control ρ rhythm · polyphony", lambda e: (
        f"{f3(e['control']['rhythm']['spearman_rho'])} · "
        f"{f3(e['control']['polyphony']['spearman_rho'])}"), "0.85 · 0.7")
    row("statistics overlap: lowest · mean", lambda e: overlap(e, "mtvae"), "0.75 · 0.82")
    row("… the train split's own (ceiling)", lambda e: overlap(e, "train (ceiling)"))
    row("infilling note F1, gaps " + " / ".join(str(g) for g in evals[names[0]]["infilling"]["gaps"])
        + " (prior latents)", lambda e: " / ".join(
            f3(e["infilling"][str(g)]["infill"]["note_f1"]) for g in e["infilling"]["gaps"]))
    row("longest run copied from train (max tokens)",
        lambda e: f"{e['memorisation']['longest_copied_run']['max']:.0f}")
    return "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-run", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=Path("src/mtvae/pretrained"))
    ap.add_argument("--eval", action="append", default=[], metavar="NAME=JSON")
    ap.add_argument("--curve", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--weakness", action="append", default=[],
                    help="a known weakness, in words (figures belong in the tables)")
    ap.add_argument("--training-note", action="append", default=[],
                    help="a fact about the training the metrics do not show, in words")
    ap.add_argument("--results-table", action="store_true",
                    help="only print docs/RESULTS.md's table of these evaluations")
    a = ap.parse_args()
    evals = {}
    for item in a.eval:
        name, _, path = item.partition("=")
        evals[name] = json.loads(Path(path).read_text())
    if a.results_table:
        print(results_table(evals))
        return
    rel = None
    if a.curve:
        curve(RunDir(a.train_run).metrics(), a.curve)
        out_dir = (a.out or a.model / "MODEL_CARD.md").parent.resolve()
        rel = os.path.relpath(a.curve.resolve(), out_dir)
    text = card(a.train_run, a.model, evals, rel, a.weakness, a.training_note)
    out = a.out or a.model / "MODEL_CARD.md"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
