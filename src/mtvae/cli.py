"""Command line: a thin layer over the Python API.

Every sub-command turns a bad argument or input (``UserError``, or a value argparse cannot
parse) into one line on stderr and exit code 2; a fault of the machine (disk full, no
permission, out of memory) into one line and exit code 1. No traceback reaches the user
unless ``MTVAE_DEBUG=1`` is set.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys

from .config import PRESETS
from .demo import DEMO_SOURCE
from .errors import UserError

DEFAULT_SOURCE = "music21:bach"


def _prepare(args: argparse.Namespace) -> int:
    from .data.pipeline import prepare, summarize

    report = prepare(
        args.sources or [DEFAULT_SOURCE], args.out, labels=args.labels, genres=args.genre,
        programs=args.program, per_genre=args.per_genre, seed=args.seed,
        max_files=args.max_files, workers=args.workers, progress=not args.quiet,
        max_bars=args.max_bars, meter=args.meter,
    )
    for s in report["skipped"][:20]:
        print(f"warning: skipped {s['path']}: {s['reason']}", file=sys.stderr)
    if len(report["skipped"]) > 20:
        print(f"warning: ... and {len(report['skipped']) - 20} more (see report.json)",
              file=sys.stderr)
    print(summarize(report))
    print(f"wrote {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train import train

    overrides = {k: getattr(args, k) for k in
                 ("max_steps", "batch_size", "lr", "seed", "patience", "val_every", "segments",
                  "beta_max", "beta_warmup_steps", "free_bits", "infill", "prior_steps",
                  "genre_dropout")
                 if getattr(args, k) is not None}
    model = {}
    if args.d_latent is not None:
        from . import validate as V

        model["d_latent"] = V.integer("d_latent", args.d_latent, 1, 4096)
    if args.no_vae:
        model["use_vae"] = False
    if args.no_memory:
        model["use_memory"] = False
    if args.no_compression:
        model["use_compression"] = False
    if args.init_logvar is not None:
        from . import validate as V

        model["init_logvar"] = V.number("init_logvar", args.init_logvar, -10.0, 10.0)
    summary = train(args.data_dir, args.out, preset=args.preset, resume=args.resume,
                    device=args.device, quiet=args.quiet, max_minutes=args.max_minutes,
                    model_overrides=model, init_from=args.init_from, stop_on_signal=True,
                    **overrides)
    if "signal" in summary:  # stopped by Ctrl-C / SIGTERM, checkpointed
        print(f"stopped at step {summary['steps']} by {signal.Signals(summary['signal']).name}; "
              f"checkpointed: go on with 'mtvae train {args.data_dir} --out {args.out} --resume'",
              file=sys.stderr)
        return 128 + summary["signal"]
    if "best_val_loss" in summary:
        print(f"stopped after {summary['steps']} steps ({summary['stopped']}); best validation "
              f"{summary['best_val_loss']:.4f} nats/token "
              f"({summary['best_val_bits_per_token']:.3f} bits); wrote {args.out}")
    return 0


# ----------------------------------------------------------------------------- generation


def _load(args, other_attributes: bool = False):
    """The model, and the call's ``Sampling``, resolved (``Sampling.resolved``: the default
    guidance, 0 for a song's latents with ``other_attributes``; the seed drawn here when not
    given), so that settings.json records what was used and every output can be made again."""
    import random

    from . import validate as V
    from .api import MusicVAE
    from .data.midi import Limits
    from .generate import Sampling

    if args.seed is None:
        args.seed = random.randrange(2**31)
    sampling = Sampling(args.temperature, args.top_k, args.top_p, args.guidance,
                        args.seed).resolved(other_attributes)
    V.out_dir(args.out)
    m = MusicVAE.load(args.run_dir, device=args.device,
                      limits=Limits(max_bars=V.integer("max_bars", args.max_bars, 1, 100_000)),
                      prior=getattr(args, "prior", "normal"))  # commands that draw new latents
    m.progress = not args.quiet
    return m, sampling


def _write(args, model, sampling, pieces: list, names: list[str], extra: dict | None = None,
           shade: list | None = None) -> int:
    """Render every piece (MIDI, PNG, WAV) into --out and write settings.json beside them
    (the command's arguments and the ``Sampling`` the pieces were decoded with); ``shade``:
    per piece, bar ranges [(start, stop)] shaded in its piano roll."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    from tqdm.auto import tqdm

    from . import __version__
    from .render import render

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items()
                if k not in ("func", "temperature", "top_k", "top_p", "guidance", "seed")}
    files = []
    for i, (score, name) in enumerate(tqdm(list(zip(pieces, names)), desc="render",
                                           unit="piece", disable=args.quiet, leave=False)):
        title = f"{args.command} {name} · seed {args.seed} · T {args.temperature}"
        if getattr(args, "genre", None):
            title += f" · {args.genre}"
        files.append(render(score, out / name, title=title, wav=not args.no_audio,
                            shade=shade[i] if shade else None))
    settings.update({"mtvae_version": __version__, "model_hash": model.model_hash(),
                     "sampling": asdict(sampling), "files": files, **(extra or {})})
    from .checkpoint import write_text

    write_text(out / "settings.json", json.dumps(settings, indent=2, default=str))
    for f in files:
        print(f["mid"])
    print(f"wrote {len(files)} piece(s) and settings.json to {out}")
    return 0


def _sample(args) -> int:
    m, s = _load(args)
    pieces = m.sample(bars=args.bars, n=args.n, genre=args.genre, rhythm=args.rhythm,
                      polyphony=args.polyphony, meter=args.meter, coherence=args.coherence,
                      sampling=s)
    pieces = pieces if isinstance(pieces, list) else [pieces]
    return _write(args, m, s, pieces, [f"sample_{i + 1:02d}" for i in range(len(pieces))])


def _continue(args) -> int:
    m, s = _load(args)
    score = m.continue_(args.prompt, bars=args.bars, genre=args.genre, meter=args.meter,
                        sampling=s)
    return _write(args, m, s, [score], ["continuation"])


def _interpolate(args) -> int:
    m, s = _load(args)
    pieces = m.interpolate(args.a, args.b, steps=args.steps, bars=args.bars, sampling=s)
    return _write(args, m, s, pieces, [f"interp_{i + 1:02d}" for i in range(len(pieces))])


def _reconstruct(args) -> int:
    from .evaluate import token_accuracy

    m, s = _load(args)
    score = m.reconstruct(args.input, bars=args.bars, sampling=s)
    acc = token_accuracy(m, args.input, bars=args.bars)
    print(f"token accuracy (teacher-forced, z = posterior mean): {acc:.4f}")
    return _write(args, m, s, [score], ["reconstruction"], {"token_accuracy": acc})


def _transfer(args) -> int:
    m, s = _load(args, other_attributes=bool(args.rhythm_shift or args.polyphony_shift))
    score = m.transfer(args.input, genre=args.genre, rhythm_shift=args.rhythm_shift,
                       polyphony_shift=args.polyphony_shift, bars=args.bars, sampling=s)
    shade = None
    if not args.bars.isdigit():  # bar ranges: the edited bars are shaded
        from . import validate as V

        shade = [V.bar_ranges(args.bars, len(m.read(args.input).bar_starts))]
    return _write(args, m, s, [score], ["transfer"], shade=shade)


def _classes(name: str, text: str | None):
    """--rhythm 3 or --rhythm 3,4,5: one class, or one per bar."""
    if text is None:
        return None
    parts = [t.strip() for t in text.split(",")]
    if not all(t.isdigit() for t in parts):
        raise UserError(f"--{name} {text}: classes are whole numbers, one or one per bar (3,4,5)")
    return [int(t) for t in parts]


def _infill(args) -> int:
    from . import validate as V

    rhythm, polyphony = _classes("rhythm", args.rhythm), _classes("polyphony", args.polyphony)
    from .api import infill_other_attributes

    m, s = _load(args, other_attributes=infill_other_attributes(args.keep_latents, args.like,
                                                                rhythm, polyphony))
    score = m.infill(args.input, args.bars, like=args.like, keep_latents=args.keep_latents,
                     rhythm=rhythm, polyphony=polyphony, genre=args.genre, sampling=s)
    ranges = V.bar_ranges(args.bars, len(m.read(args.input).bar_starts))
    return _write(args, m, s, [score], ["infill"],
                  {"new_bars": [[a + 1, b] for a, b in ranges]}, shade=[ranges])


def _render(args) -> int:
    from pathlib import Path

    from . import validate as V
    from .data.midi import Limits, read_midi
    from .render import check_drawable, piano_roll, write_wav

    path = Path(args.input)
    wav = args.wav or (None if args.png else f"{path.stem}.wav")
    png = args.png or (None if args.wav else f"{path.stem}.png")
    wav = wav and V.out_file(wav, "wav")
    png = png and V.out_file(png, "png")
    limits = Limits(max_bars=V.integer("max_bars", args.max_bars, 1, 100_000))
    read = read_midi(path, limits)
    if read.trimmed_bars:
        print(f"note: {read.trimmed_bars} silent bars were left out (runs of more than "
              f"{limits.max_empty_bars} empty bars, and silence before the first note)",
              file=sys.stderr)
    check_drawable(read.score, wav=bool(wav))
    if png:
        piano_roll(read.score, png, title=path.name)
        print(png)
    if wav:
        write_wav(read.score, wav)
        print(wav)
    return 0


def _evaluate(args) -> int:
    from .evaluate import evaluate, format_table, write_json

    compare = {}
    for item in args.compare or []:
        name, sep, folder = item.partition("=")
        if not sep:
            raise UserError(f"--compare {item}: expected NAME=FOLDER")
        compare[name] = folder
    if args.json:
        from . import validate as V

        V.out_file(args.json, "json")
    result = evaluate(args.run_dir, args.data_dir, split=args.split, samples=args.samples,
                      bars=args.bars, seed=args.seed, max_windows=args.max_windows,
                      device=args.device, compare=compare, temperature=args.temperature,
                      top_k=args.top_k, top_p=args.top_p, coherence=args.coherence,
                      prior=args.prior, guidance=args.guidance, genre=args.genre,
                      by_position=args.by_position,
                      progress=(lambda msg: None) if args.quiet else print)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, minutes=args.minutes, source=args.source, model=args.model,
             max_files=args.max_files)
    return 0


def _studio(args) -> int:
    from . import validate as V

    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise UserError("the studio needs Gradio: pip install 'mtvae[studio]' (or make studio)")
    from .studio import serve

    port = V.integer("port", args.port, 1, 65535)
    print(f"mtvae studio: loading {args.run_dir} ...", file=sys.stderr, flush=True)
    _, url = serve(args.run_dir, host=args.host, port=port, device=args.device, block=False)
    print(f"mtvae studio: serving {args.run_dir} at {url} (Ctrl-C stops it)", flush=True)
    try:
        import threading

        threading.Event().wait()
    except KeyboardInterrupt:
        print("mtvae studio: stopped", file=sys.stderr)
    return 0


def _add_max_bars(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-bars", type=int, default=2048, metavar="N",
                   help="refuse MIDI longer than N bars after trimming silence (default 2048)")


def _add_guidance(p: argparse.ArgumentParser) -> None:
    p.add_argument("--guidance", type=float, metavar="W",
                   help="latent guidance: how much more than plainly the music follows its bar "
                        "latents (0 = plain decoding; default 0.5, or 0 where a song's latents "
                        "get other attributes, as in transfer; each step decodes twice)")


def _add_sampling(p: argparse.ArgumentParser, out_default: str) -> None:
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    _add_guidance(p)
    p.add_argument("--seed", type=int, help="default: random (recorded in settings.json)")
    p.add_argument("--out", default=out_default, metavar="OUT_DIR")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-audio", action="store_true", help="skip the WAV files")
    p.add_argument("--quiet", action="store_true")
    _add_max_bars(p)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block) with exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_prior(g) -> None:
    g.add_argument("--prior", default="auto", choices=("auto", "learnt", "normal"),
                   help="where new bars' latents come from: the run's learnt prior ('mtvae "
                        "prior'), N(0, I), or auto (default: the learnt prior if the run has one)")


def _prior(args) -> int:
    from .learnt_prior import train_prior

    s = train_prior(args.run_dir, args.data_dir, steps=args.steps, max_songs=args.max_songs,
                    device=args.device, quiet=args.quiet, seed=args.seed)
    print(f"fitted a prior to {s['train_bars']} bars of {s['train_songs']} songs: validation "
          f"{s['valid_nll_per_bar']:.1f} nats per bar (N(0, I): "
          f"{s['valid_nll_standard_normal']:.1f}); wrote {args.run_dir}/prior.safetensors")
    return 0


def _export(args) -> int:
    from .run import export

    out = export(args.run_dir, args.out_dir, half=not args.float32)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"wrote {out} ({size / 2**20:.1f} MiB): load it with MusicVAE.load('{out}'), "
          f"fine-tune it with mtvae train DATA_DIR --out RUN --from {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mtvae", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    pp = sub.add_parser(
        "prepare", help="MIDI sources -> tokens, bars and attributes in DATA_DIR",
        description="SOURCE: a folder of MIDI files, lakh:PATH (clean_midi or lmd_matched), "
        "or music21:NAME[,NAME...]; GENRE=SOURCE gives all its songs that genre "
        f"(pop=data/pop909). Default: {DEFAULT_SOURCE}.",
    )
    pp.add_argument("sources", nargs="*", metavar="SOURCE")
    pp.add_argument("--out", required=True, metavar="DATA_DIR")
    pp.add_argument("--labels", metavar="FILE", help="genre labels (CSV/TSV or tagtraum .cls)")
    pp.add_argument("--genre", action="append", metavar="G", help="keep this genre (repeatable)")
    pp.add_argument("--program", action="append", type=int, metavar="P",
                    help="keep songs with a non-drum track of this GM program, 0-based (repeatable)")
    pp.add_argument("--per-genre", type=int, metavar="N", help="sample N songs per genre")
    pp.add_argument("--seed", type=int, default=0)
    pp.add_argument("--max-files", type=int, metavar="N")
    pp.add_argument("--workers", type=int, metavar="N", help="processes (default: all cores)")
    pp.add_argument("--quiet", action="store_true", help="no progress bar")
    pp.add_argument("--meter", default="auto", metavar="auto|4/4|keep",
                    help="auto (default): re-bar songs that declare one-beat bars (1/4, or a "
                    "switch to it) on the meter their notes imply; 4/4: re-bar every song in "
                    "4/4 with the downbeat inferred; keep: the declared meters")
    _add_max_bars(pp)
    pp.set_defaults(func=_prepare)

    pt = sub.add_parser("train", help="train a model on a DATA_DIR",
                        description="Train, or with --resume continue, a model; writes RUN_DIR.")
    pt.add_argument("data_dir", metavar="DATA_DIR")
    pt.add_argument("--out", required=True, metavar="RUN_DIR")
    pt.add_argument("--preset", choices=tuple(PRESETS), help="default: small")
    pt.add_argument("--max-steps", type=int)
    pt.add_argument("--max-minutes", type=float)
    pt.add_argument("--batch-size", type=int)
    pt.add_argument("--segments", type=int, help="segments per example (memory carried)")
    pt.add_argument("--lr", type=float)
    pt.add_argument("--seed", type=int)
    pt.add_argument("--patience", type=int, help="validations without improvement to stop")
    pt.add_argument("--val-every", type=int, metavar="N")
    pt.add_argument("--device", default="auto", help="auto, cpu or cuda")
    pt.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    pt.add_argument("--from", dest="init_from", metavar="RUN|pretrained",
                    help="fine-tune: start from that run's weights (its shape, window and "
                         "batch; a third of its learning rate; new genres get new embeddings)")
    lat = pt.add_argument_group("latent (defaults measured in docs/RESULTS.md#latents)")
    lat.add_argument("--beta-max", type=float, metavar="B", help="final weight of the KL term")
    lat.add_argument("--beta-warmup-steps", type=int, metavar="N", help="linear β warm-up")
    lat.add_argument("--free-bits", type=float, metavar="NATS",
                     help="KL target per latent dimension (default 2)")
    lat.add_argument("--d-latent", type=int, metavar="N", help="latent size per bar")
    lat.add_argument("--init-logvar", type=float, metavar="L",
                     help="posterior log-variance at initialisation (negative: z starts narrow)")
    pt.add_argument("--infill", type=float, metavar="P",
                    help="share of training windows arranged for infilling (default 0.5)")
    pt.add_argument("--genre-dropout", type=float, metavar="P",
                    help="share of training windows (and of the learnt prior's) given the "
                         "genre 'unknown', which is what sample, reconstruct, transfer, continue "
                         "and infill use without --genre (default 0.1)")
    pt.add_argument("--prior-steps", type=int, metavar="N",
                    help="after training, fit the learnt prior over bar latents for N steps "
                         "(as 'mtvae prior'; 0: none)")
    pt.add_argument("--no-vae", action="store_true", help="ablation: decoder alone")
    pt.add_argument("--no-memory", action="store_true", help="ablation: no memory at all")
    pt.add_argument("--no-compression", action="store_true",
                    help="ablation: Transformer-XL memory without compression")
    pt.add_argument("--quiet", action="store_true", help="log lines instead of a progress bar")
    pt.set_defaults(func=_train)

    g = sub.add_parser("export", help="a run's model, small, for others to load or fine-tune",
                       description="Write RUN_DIR's config, tokenizer, best weights (float16) "
                       "and learnt prior to OUT_DIR, without the training state.")
    g.add_argument("run_dir", metavar="RUN_DIR")
    g.add_argument("out_dir", metavar="OUT_DIR")
    g.add_argument("--float32", action="store_true", help="keep the weights in float32")
    g.set_defaults(func=_export)

    g = sub.add_parser("prior", help="fit a learnt prior to a trained run's bar latents",
                       description="Encode the training songs of DATA_DIR (the run's) with the "
                       "run's encoder and fit p(z_i | z_<i, bar classes, genre) to their "
                       "latents; writes RUN_DIR/prior.safetensors, which sample, continue, "
                       "infill and evaluate then use.")
    g.add_argument("run_dir", metavar="RUN_DIR")
    g.add_argument("data_dir", metavar="DATA_DIR")
    g.add_argument("--steps", type=int,
                   help="training steps, at most (default 1500; it stops when validation stops improving)")
    g.add_argument("--max-songs", type=int, metavar="N", help="training songs encoded, 32 bars of each (default 1000)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="cpu")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=_prior)

    g = sub.add_parser("sample", help="new pieces from the prior")
    g.add_argument("run_dir", metavar="RUN_DIR")
    g.add_argument("--bars", type=int, default=16)
    g.add_argument("--n", type=int, default=4)
    g.add_argument("--genre")
    g.add_argument("--rhythm", type=int, metavar="CLASS", help="rhythm class of every bar (0-7)")
    g.add_argument("--polyphony", type=int, metavar="CLASS",
                   help="polyphony class of every bar (0-7)")
    g.add_argument("--meter", metavar="N/D",
                   help="meter of every bar (default: the training data's most common)")
    g.add_argument("--coherence", type=float, default=0.0, metavar="C",
                   help="share of each bar latent the bars have in common (0 independent "
                        "bars, 1 one latent for all; default 0; with --prior normal)")
    _add_prior(g)
    _add_sampling(g, "out/sample")
    g.set_defaults(func=_sample)

    g = sub.add_parser("continue", help="continue a MIDI prompt")
    g.add_argument("run_dir", metavar="RUN_DIR")
    g.add_argument("prompt", metavar="PROMPT.mid")
    g.add_argument("--bars", type=int, default=8)
    g.add_argument("--genre")
    g.add_argument("--meter", metavar="N/D", help="meter of the new bars (default: the prompt's last)")
    _add_prior(g)
    _add_sampling(g, "out/continue")
    g.set_defaults(func=_continue)

    g = sub.add_parser("interpolate", help="spherical interpolation between two songs")
    g.add_argument("run_dir", metavar="RUN_DIR")
    g.add_argument("a", metavar="A.mid")
    g.add_argument("b", metavar="B.mid")
    g.add_argument("--steps", type=int, default=5)
    g.add_argument("--bars", type=int, default=8)
    _add_sampling(g, "out/interpolate")
    g.set_defaults(func=_interpolate)

    g = sub.add_parser("reconstruct", help="encode then decode a song; prints token accuracy")
    g.add_argument("run_dir", metavar="RUN_DIR")
    g.add_argument("input", metavar="IN.mid")
    g.add_argument("--bars", type=int, default=16, help="first N bars (default 16)")
    _add_sampling(g, "out/reconstruct")
    g.set_defaults(func=_reconstruct)

    g = sub.add_parser("transfer", help="keep a song's latents, change genre or attributes")
    g.add_argument("run_dir", metavar="RUN_DIR")
    g.add_argument("input", metavar="IN.mid")
    g.add_argument("--genre")
    g.add_argument("--rhythm-shift", type=int, default=0, metavar="K")
    g.add_argument("--polyphony-shift", type=int, default=0, metavar="K")
    g.add_argument("--bars", default="16",
                   help="first N bars (default 16), or bar ranges to edit in place, keeping "
                        "every other bar note for note (5-8 or 3-4,11-12; needs a model "
                        "trained with --infill)")
    _add_sampling(g, "out/transfer")
    g.set_defaults(func=_transfer)

    g = sub.add_parser("infill", help="rewrite bars of a song so they lead into what follows")
    g.add_argument("run_dir", metavar="RUN_DIR")
    g.add_argument("input", metavar="IN.mid")
    g.add_argument("--bars", required=True,
                   help="bars to rewrite, numbered from 1: 9-12, or several ranges 3-4,11-12")
    g.add_argument("--like", metavar="OTHER.mid",
                   help="take the new bars' latents from this song's bars of the same numbers")
    g.add_argument("--keep-latents", action="store_true",
                   help="re-decode the bars from their own latents (a variation)")
    g.add_argument("--rhythm", metavar="CLASS[,CLASS...]",
                   help="rhythm class of the new bars (0-7): one, or one per new bar")
    g.add_argument("--polyphony", metavar="CLASS[,CLASS...]",
                   help="polyphony class of the new bars (0-7): one, or one per new bar")
    g.add_argument("--genre")
    _add_prior(g)
    _add_sampling(g, "out/infill")
    g.set_defaults(func=_infill)

    g = sub.add_parser("render", help="MIDI -> piano-roll PNG and WAV")
    g.add_argument("input", metavar="IN.mid")
    g.add_argument("--wav", metavar="OUT.wav")
    g.add_argument("--png", metavar="OUT.png")
    _add_max_bars(g)
    g.set_defaults(func=_render)

    g = sub.add_parser("evaluate", help="likelihood, reconstruction, control, music statistics")
    g.add_argument("run_dir", metavar="RUN_DIR")
    g.add_argument("data_dir", metavar="DATA_DIR")
    g.add_argument("--split", default="test", choices=("train", "valid", "test"))
    g.add_argument("--genre", help="only the split's songs of this genre (e.g. a corpus given "
                                   "as GENRE=SOURCE to prepare); samples of this genre")
    g.add_argument("--by-position", type=int, metavar="TOKENS", default=0,
                   help="also bits per token by position in the song, each song read from its "
                        "start up to TOKENS tokens with memory carried (e.g. 4096)")
    g.add_argument("--samples", type=int, default=32, help="prior samples for the statistics")
    g.add_argument("--bars", type=int, default=8, help="bars per sample / per real excerpt")
    g.add_argument("--max-windows", type=int, default=200,
                   help="windows of the split for the likelihood (0 = all)")
    g.add_argument("--compare", action="append", metavar="NAME=FOLDER",
                   help="also compare these MIDI samples (e.g. a baseline's)")
    g.add_argument("--temperature", type=float, default=1.0,
                   help="sampling of the prior and control samples")
    g.add_argument("--top-k", type=int)
    g.add_argument("--top-p", type=float)
    g.add_argument("--coherence", type=float, default=0.0, metavar="C",
                   help="prior and control samples: share of each bar latent the bars have in "
                        "common (as sample --coherence)")
    _add_guidance(g)
    _add_prior(g)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="cpu")
    g.add_argument("--json", metavar="FILE")
    g.add_argument("--quiet", action="store_true")
    _add_max_bars(g)
    g.set_defaults(func=_evaluate)

    g = sub.add_parser("demo", help="the shipped model's music and a short fine-tune, on "
                       "index.html")
    g.add_argument("--out", default="out/demo", metavar="OUT_DIR")
    g.add_argument("--model", default="pretrained", metavar="RUN|pretrained")
    g.add_argument("--minutes", type=float, default=3.0, help="fine-tuning time")
    g.add_argument("--source", default=DEMO_SOURCE,
                   help="the corpus to fine-tune on (default: Aird's Airs, never seen)")
    g.add_argument("--max-files", type=int, default=160)
    g.set_defaults(func=_demo)

    g = sub.add_parser("studio", help="a local web page to make music with a model")
    g.add_argument("run_dir", metavar="RUN_DIR", nargs="?", default="pretrained",
                   help="a trained run (default: pretrained, the model that ships with mtvae)")
    g.add_argument("--port", type=int, default=7860)
    g.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only)")
    g.add_argument("--device", default="cpu")
    g.set_defaults(func=_studio)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a value argparse cannot parse (one line, code 2)
        return int(e.code or 0)
    debug = os.environ.get("MTVAE_DEBUG", "") not in ("", "0")
    where = f"mtvae {args.command}"
    try:
        return args.func(args)
    except UserError as e:
        _say(f"{where}: error: {e}")
        return 2
    except KeyboardInterrupt:
        _say(f"{where}: interrupted")
        return 130
    except BrokenPipeError:  # e.g. `mtvae ... | head`: the reader went away
        sys.stderr.close()
        return 1
    except OSError as e:
        if debug:
            raise
        what = "disk full" if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else (
            e.strerror or " ".join(str(e).split())[:160] or type(e).__name__)
        _say(f"{where}: error: {what}{f': {e.filename}' if e.filename else ''}")
        return 1
    except MemoryError:
        if debug:
            raise
        _say(f"{where}: error: out of memory")
        return 1
    except Exception as e:  # noqa: BLE001 - a bug: one line unless debugging
        if debug:
            raise
        text = " ".join(str(e).split())[:300]
        _say(f"{where}: internal error: {type(e).__name__}: {text} "
             "(run with MTVAE_DEBUG=1 for the traceback, and please report it)")
        return 1


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
