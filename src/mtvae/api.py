"""The Python API: ``MusicVAE.load(run_dir)`` then sample, continue, interpolate, reconstruct,
transfer, infill and encode. Inputs are MIDI paths or ``symusic.Score``; outputs are ``symusic.Score``.

```python
from mtvae import MusicVAE, Sampling
m = MusicVAE.load("runs/pop")
score = m.sample(bars=16, genre="BluesRock", temperature=0.9, seed=1)
score = m.sample(bars=16, sampling=Sampling(temperature=0.9, top_p=0.95, guidance=0, seed=1))
score.dump_midi("out.mid")
```

How each call decodes is one ``Sampling`` (temperature, top-k/p, latent guidance, seed),
given whole (``sampling=``) or field by field as keywords (``temperature=0.9``); nothing about
decoding is kept between calls.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields, replace

import numpy as np
import symusic
import torch

from . import validate as V
from .data import tokens as T
from .data.grammar import Grammar
from .data.midi import DEFAULT_LIMITS, Limits, read_midi
from .errors import UserError
from .generate import Plan, Sampling, context_bars, generate
from .latents import encode_bars, slerp
from .run import BEST, PRIOR, RunDir, resolve

Song = "str | os.PathLike | symusic.Score"  # a MIDI path or a parsed score


@dataclass
class EncodedInput:
    ids: np.ndarray  # base token ids
    bar_starts: np.ndarray
    rhythm: np.ndarray  # classes per bar
    polyphony: np.ndarray
    timesigs: np.ndarray  # the TimeSig token of each bar

    def first_bars(self, n: int | None) -> EncodedInput:
        if n is None or n >= len(self.bar_starts):
            return self
        end = int(self.bar_starts[n])
        return EncodedInput(self.ids[:end], self.bar_starts[:n], self.rhythm[:n], self.polyphony[:n],
                            self.timesigs[:n])

    def bar_tokens(self) -> list[list[int]]:
        """Each bar's tokens, as lists (tokens before the first bar are left out)."""
        ends = list(self.bar_starts[1:]) + [len(self.ids)]
        return [self.ids[a:b].tolist() for a, b in zip(self.bar_starts, ends)]

    def bars_from(self, first: int) -> EncodedInput:
        """The bars from ``first`` on (bar starts relative to the new first token)."""
        a = int(self.bar_starts[first])
        return EncodedInput(self.ids[a:], self.bar_starts[first:] - a, self.rhythm[first:],
                            self.polyphony[first:], self.timesigs[first:])


class MusicVAE:
    def __init__(self, model, run: RunDir, weights: str = BEST, limits: Limits = DEFAULT_LIMITS,
                 prior=None):
        self.model, self.run, self.weights = model, run, weights
        self.config, self.tokenizer = run.config, run.tokenizer
        # the learnt prior over bar latents (``mtvae prior``), or None: z ~ N(0, I)
        self.prior = prior
        self.tables = T.Vocab(self.tokenizer)
        self.grammar = Grammar(self.tables)
        self.device = next(model.parameters()).device
        self.limits = limits  # the MIDI reader's guards for every song this model reads
        self.progress = False  # a progress bar for generation (the CLI turns it on)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, run_dir: str | os.PathLike | RunDir, device: str = "cpu", weights: str = BEST,
             limits: Limits = DEFAULT_LIMITS, prior: str = "auto") -> MusicVAE:
        """``prior``: where new bars' latents come from: "learnt" (RUN_DIR/prior.safetensors,
        made by ``mtvae prior``), "normal" (N(0, I), what the VAE was trained with) or
        "auto" (the learnt prior when the run has one)."""
        if prior not in PRIORS:
            raise UserError(f"--prior {prior!r}: choose from {', '.join(PRIORS)}")
        run = run_dir if isinstance(run_dir, RunDir) else RunDir(resolve(run_dir))
        if not run.path.is_dir():
            raise UserError(f"RUN_DIR not found: {run}")
        dev = V.device(device)
        run.require_weights(weights)
        cfg = run.config
        # songs are re-barred as the training data was (older runs: declared meters kept)
        limits = replace(limits, meter=cfg.data.get("meter", "keep"))
        run.tokenizer  # noqa: B018 - checked against the config before the weights are read
        model = run.load_model(weights, dev)
        learnt = None
        if prior == "learnt" or (prior == "auto" and run.has(PRIOR)):
            learnt = run.load_prior(weights).to(dev)
        elif prior == "auto" and cfg.model.use_vae and cfg.train.prior_steps > 0:
            print(f"note: {run} has no learnt prior (its training stopped before fitting "
                  f"one): new bars' latents come from N(0, I); 'mtvae prior {run} "
                  "DATA_DIR' fits it", file=sys.stderr)
        return cls(model, run, weights, limits, learnt)

    @property
    def run_dir(self):
        return self.run.path

    @property
    def genres(self) -> list[str]:
        return list(self.config.data.get("genres", ["unknown"]))

    def model_hash(self) -> str:
        return self.run.weights_hash(self.weights)

    # ------------------------------------------------------------------ inputs
    def _genre(self, genre: str | None) -> int:
        if genre is None:
            return 0
        known = {g.lower(): i for i, g in enumerate(self.genres)}
        if not isinstance(genre, str) or genre.lower() not in known:
            raise UserError(f"--genre {genre!r}: unknown genre; this model knows: "
                            f"{', '.join(self.genres)}")
        return known[genre.lower()]

    def read(self, song: Song) -> EncodedInput:
        """Read a MIDI path or Score through the MIDI reader (the guards ``prepare`` applies)
        and tokenize it; its bars and attribute classes."""
        if not isinstance(song, (str, os.PathLike, symusic.Score)):
            raise UserError(f"expected a MIDI path or a symusic.Score, got {type(song).__name__}")
        read = read_midi(song, self.limits)
        name = "score" if isinstance(song, symusic.Score) else str(song)
        enc = T.encode_score(read.score, self.tokenizer, self.tables)
        kinds = self.grammar.kind[enc.ids.astype(np.int64)]
        if len(enc.bar_starts) == 0 or not np.any((kinds == T.PITCH) | (kinds == T.PITCHDRUM)):
            raise UserError(f"{name}: no notes in the tokenizer's pitch range")
        edges = self.config.data["attribute_edges"]
        ids = enc.ids.astype(np.int64)
        ts = T.bar_timesigs(ids, enc.bar_starts, self.tables)
        ts = np.where(ts >= 0, ts, self.timesig_id("4/4"))
        return EncodedInput(ids, enc.bar_starts,
                            T.attribute_classes(enc.rhythm, edges["rhythm"]).astype(np.int64),
                            T.attribute_classes(enc.polyphony, edges["polyphony"]).astype(np.int64),
                            ts)

    # ------------------------------------------------------------------ meters
    @property
    def meters(self) -> list[str]:
        """The meters this model writes (``TimeSig`` tokens of its vocabulary), as "N/D"."""
        return [t.split("_", 1)[1] for t in self.tokenizer.vocab if t.startswith("TimeSig_")]

    def timesig_id(self, meter: str) -> int:
        tok = self.tokenizer.vocab.get(f"TimeSig_{meter}") if isinstance(meter, str) else None
        if tok is None:
            raise UserError(f"--meter {meter!r}: choose a meter such as 4/4, 3/4 or 6/8 "
                            f"({len(self.meters)} known)")
        return int(tok)

    def default_meter(self) -> str:
        """The train split's most common meter (4/4 for runs that did not record it)."""
        meters = self.config.data.get("meters") or {}
        for name in meters:
            if name.startswith("TimeSig_") and name in self.tokenizer.vocab:
                return name.split("_", 1)[1]
        return "4/4"

    def encode(self, song: Song | EncodedInput, bars: int | None = None) -> torch.Tensor:
        """Posterior means of the bar latents of a song (a MIDI path or Score, or one already
        ``read``), its first ``bars`` bars (None: all): [n_bars, d_latent]."""
        bars = V.bars(bars, hi=self.limits.max_bars, allow_none=True)
        enc = song if isinstance(song, EncodedInput) else self.read(song)
        if self.model.encoder is None:
            raise UserError("this model was trained with --no-vae: it has no latents")
        return encode_bars(self.model, enc.first_bars(bars).bar_tokens())[0]

    def _own_latents(self, enc: EncodedInput):
        return self.encode(enc) if self.model.encoder is not None else None

    @torch.no_grad()
    def teacher_forced_logits(self, enc: EncodedInput) -> torch.Tensor:
        """Next-token logits [len(ids) - 1, V] of a read song, z = posterior mean."""
        ids = torch.from_numpy(enc.ids)[None].to(self.device)
        cond = self.conditions(self._own_latents(enc), enc.rhythm, enc.polyphony, 0)
        bar_of = torch.from_numpy(np.searchsorted(enc.bar_starts, np.arange(len(enc.ids) - 1),
                                                  side="right") - 1).to(self.device)
        return self.model.decode(ids[:, :-1], cond[bar_of][None])[0][0]

    # ------------------------------------------------------------------ decoding
    def _classes(self, values) -> torch.Tensor:
        """Bar attribute classes, clipped to the model's, as a [1, N] tensor."""
        return torch.as_tensor(np.clip(values, 0, self.n_classes - 1), device=self.device)[None]

    def conditions(self, z, rhythm, polyphony, genre: int = 0) -> torch.Tensor:
        """Each bar's condition [n_bars, d_cond] (``Plan.cond_bars``): its latent (None for a
        model without one), rhythm and polyphony classes (clipped to the model's) and the
        genre's index."""
        r, p = self._classes(rhythm), self._classes(polyphony)
        zz = None if self.model.encoder is None else z.to(self.device)[None]
        g = torch.tensor([genre], device=self.device)
        return self.model.bar_conditions(zz, r, p, g)[0]

    def decode(self, plans: list[Plan], sampling: Sampling, prompts: list[list[int]] | None = None,
               use_cache: bool = True) -> list[symusic.Score]:
        """Decode plans as one batch into Scores (each after its ``prompts`` tokens)."""
        outs = self.generate(plans, sampling, use_cache)
        scores = []
        for i, new in enumerate(outs):
            ids = (prompts[i] if prompts else []) + new
            scores.append(self.tokenizer.decode(ids))
        return scores

    def generate(self, plans: list[Plan], sampling: Sampling, use_cache: bool = True):
        """Each plan's new tokens, with a progress bar when ``self.progress``."""
        from tqdm.auto import tqdm

        bar = tqdm(desc="generate", unit="tok", disable=not self.progress, leave=False)

        def progress(n: int) -> None:  # every 32 tokens: a bar a page follows (the studio's
            if n - bar.n >= 32:  # gr.Progress) costs a message per update
                bar.update(n - bar.n)

        outs = generate(self.model, self.grammar, plans, sampling, use_cache=use_cache,
                        progress=progress)
        bar.close()
        return outs

    @staticmethod
    def sampling(sampling: Sampling | None = None, other_attributes: bool = False,
                 default_seed: int | None = None, **fields_) -> Sampling:
        """One call's ``Sampling``: ``sampling`` (default ``Sampling()``) with any of its
        fields given as keywords, then its defaults filled in (``Sampling.resolved``;
        ``other_attributes``: latents from a song decoded with other attributes than their
        bars', which turns the default guidance off; ``default_seed``: the seed when none is
        given, else a random one)."""
        if sampling is not None and not isinstance(sampling, Sampling):
            raise UserError(f"sampling must be a Sampling, not {type(sampling).__name__}")
        unknown = set(fields_) - SAMPLING_FIELDS
        if unknown:
            raise TypeError(f"unexpected argument(s): {', '.join(sorted(unknown))}")
        s = replace(sampling or Sampling(), **fields_)
        if s.seed is None and default_seed is not None:
            s = replace(s, seed=default_seed)
        return s.resolved(other_attributes)

    def _z_prior(self, bars: int, seed: int | None, coherence: float = 0.0, rhythm=None,
                 polyphony=None, genre: int = 0, context=None) -> torch.Tensor:
        """[bars, d_latent] of new bars. From the learnt prior when the model has one, given
        the bars' classes, genre and the latents of the ``context`` bars before them
        (``(z [C, D], rhythm [C], polyphony [C])``); otherwise each bar's z is N(0, I), and with
        ``coherence`` c the bars share a piece-wide part, z_i = sqrt(c) s + sqrt(1 - c) e_i
        (still N(0, I) each, correlation c between any two bars)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        if self.prior is not None:
            if coherence > 0:
                raise UserError("--coherence draws bars from N(0, I); this model samples from "
                                "its learnt prior (use --prior normal for --coherence)")
            g = torch.tensor([genre], device=self.device)
            c = cr = cp = None
            if context is not None and len(context[0]) > 0:
                c = context[0].to(self.device)[None]
                cr, cp = self._classes(context[1]), self._classes(context[2])
            return self.prior.sample(self._classes(rhythm), self._classes(polyphony), g, c, cr,
                                     cp, generator=gen)[0].cpu()
        z = torch.randn(bars, self.config.model.d_latent, generator=gen)
        if coherence > 0:  # drawn after the bars' own parts: coherence 0 keeps earlier draws
            shared = torch.randn(1, z.shape[1], generator=gen)
            z = coherence ** 0.5 * shared + (1.0 - coherence) ** 0.5 * z
        return z

    @property
    def n_classes(self) -> int:
        """Classes of each bar attribute (from the DATA_DIR the model was trained on)."""
        return self.config.model.n_attr_classes

    def _per_bar(self, value, bars: int, rng: np.random.Generator | None, what: str) -> np.ndarray:
        n = self.n_classes
        if value is None:  # classes are train-set quantiles, so a uniform draw follows the data
            return np.full(bars, rng.integers(0, n))
        try:
            arr = np.atleast_1d(np.asarray(value, dtype=np.int64))
        except (TypeError, ValueError, OverflowError):
            raise UserError(f"--{what} {value!r}: classes are whole numbers 0..{n - 1}") from None
        if arr.size == 0 or arr.ndim != 1 or arr.min() < 0 or arr.max() >= n:
            raise UserError(f"--{what} {value}: classes are 0..{n - 1}")
        return np.resize(arr, bars)

    def sample(self, bars: int = 16, n: int = 1, genre: str | None = None, rhythm=None,
               polyphony=None, meter: str | None = None, coherence: float = 0.0,
               sampling: Sampling | None = None, **sampling_fields):
        """New pieces from the prior, every bar in ``meter`` (default: the training data's
        most common). ``coherence``: the share of each bar latent's variance that all bars of
        a piece share (0: independent bars, as in training; 1: one latent for every bar).
        Returns a Score (n=1) or a list of n Scores."""
        plans, sampling = self.sample_plans(bars, n, genre, rhythm, polyphony, meter, coherence,
                                            sampling, **sampling_fields)
        scores = self.decode(plans, sampling)
        return scores[0] if len(scores) == 1 else scores

    def sample_plans(self, bars: int = 16, n: int = 1, genre: str | None = None, rhythm=None,
                     polyphony=None, meter: str | None = None, coherence: float = 0.0,
                     sampling: Sampling | None = None,
                     **sampling_fields) -> tuple[list[Plan], Sampling]:
        """What ``sample`` decodes: one plan per piece (each with its own seed, so plans of
        several calls may be decoded together, as the studio does) and the sampling."""
        bars = V.bars(bars)
        ts = self.timesig_id(meter if meter is not None else self.default_meter())
        n = V.integer("n", n, 1, V.MAX_PIECES)
        coherence = V.number("coherence", coherence, 0.0, 1.0)
        sampling = self.sampling(sampling, **sampling_fields)
        seed = sampling.seed
        g = self._genre(genre)
        plans = []
        for i in range(n):
            rng = np.random.default_rng([seed, i])
            r = self._per_bar(rhythm, bars, rng, "rhythm")
            p = self._per_bar(polyphony, bars, rng, "polyphony")
            cond = self.conditions(self._z_prior(bars, seed + i, coherence, r, p, g), r, p, g)
            plans.append(Plan(cond, bars, seed=seed + i, timesigs=[ts]))
        return plans, sampling

    def prompt_context_tokens(self) -> int:
        """How much of a prompt the model reads: four times what its memories can hold."""
        m = self.config.model
        return 4 * (m.seg_len + m.effective_mem_len + m.effective_cmem_len * m.cmem_ratio)

    def continue_(self, prompt: Song, bars: int = 8, genre: str | None = None, rhythm=None,
                  polyphony=None, meter: str | None = None, sampling: Sampling | None = None,
                  **sampling_fields) -> symusic.Score:
        """The prompt fills the memory, then ``bars`` new bars follow (prompt + continuation).

        The model reads the prompt's last whole bars covering ``prompt_context_tokens()`` (four
        times what its memories hold, so older bars could not change what it writes); the
        output holds the whole prompt. New bars keep the prompt's last meter unless ``meter``."""
        bars = V.bars(bars)
        ts = None if meter is None else self.timesig_id(meter)
        sampling = self.sampling(sampling, **sampling_fields)
        seed = sampling.seed
        g = self._genre(genre)
        enc = self.read(prompt)
        r = self._per_bar(rhythm if rhythm is not None else enc.rhythm[-1], bars, None, "rhythm")
        p = self._per_bar(polyphony if polyphony is not None else enc.polyphony[-1], bars, None,
                          "polyphony")
        full_ids = enc.ids.tolist()
        first = _tail_bar(enc.bar_starts, len(enc.ids), self.prompt_context_tokens())
        tail = enc.bars_from(first)
        ts = int(enc.timesigs[-1]) if ts is None else ts
        zp = self._own_latents(tail)
        z = None if zp is None else torch.cat([zp.cpu(), self._z_prior(
            bars, seed, 0.0, r, p, g, (zp, tail.rhythm, tail.polyphony))])
        cond = self.conditions(z, np.concatenate([tail.rhythm, r]),
                               np.concatenate([tail.polyphony, p]), g)
        plan = Plan(cond, bars, prompt=tail.ids.tolist(), seed=seed, timesigs=[ts])
        return self.decode([plan], sampling, [full_ids])[0]

    def _from_latents(self, z, rhythm, polyphony, genre: int, sampling: Sampling,
                      timesigs=None):
        """Decode one piece of ``len(rhythm)`` bars from its bar latents and attributes."""
        cond = self.conditions(z, rhythm, polyphony, genre)
        ts = None if timesigs is None else [int(t) for t in timesigs]
        plan = Plan(cond, len(rhythm), seed=sampling.seed, timesigs=ts)
        return self.decode([plan], sampling)[0]

    def reconstruct(self, song: Song, bars: int | None = 16, genre: str | None = None,
                    sampling: Sampling | None = None, **sampling_fields) -> symusic.Score:
        """Encode a song's first ``bars`` bars (None: all) and decode them again (seed 0
        unless given)."""
        return self.transfer(song, genre=genre, bars=bars, sampling=sampling, **sampling_fields)

    def transfer(self, song: Song, genre: str | None = None, rhythm_shift: int = 0,
                 polyphony_shift: int = 0, bars: int | str | None = 16,
                 sampling: Sampling | None = None, **sampling_fields) -> symusic.Score:
        """Keep the song's bar latents; change its genre and/or shift its bar attributes
        (shifts are in classes, at most ``n_classes - 1`` either way; results are clipped).
        Seed 0 unless given.

        ``bars``: a number re-decodes the song's first ``bars`` bars (None: all); bar ranges
        ("5-8", "3-4,11-12", numbered from 1) edit only those bars, in place, and keep every
        other bar note for note (``infill`` with the song's own latents)."""
        top = self.n_classes - 1
        rs = V.integer("rhythm_shift", rhythm_shift, -top, top)
        ps = V.integer("polyphony_shift", polyphony_shift, -top, top)
        sampling = self.sampling(sampling, other_attributes=bool(rs or ps), default_seed=0,
                                 **sampling_fields)
        if isinstance(bars, (str, list, tuple)) and not (isinstance(bars, str) and bars.isdigit()):
            return self.infill(song, bars, keep_latents=True, genre=genre, sampling=sampling,
                               _shifts=(rs, ps))
        bars = V.bars(int(bars) if isinstance(bars, str) else bars, hi=V.MAX_GEN_BARS,
                      allow_none=True)
        g = self._genre(genre)
        enc = self.read(song).first_bars(bars)
        if len(enc.bar_starts) > V.MAX_GEN_BARS:
            enc = enc.first_bars(V.MAX_GEN_BARS)
        return self._from_latents(self._own_latents(enc), enc.rhythm + rs, enc.polyphony + ps,
                                  g, sampling, enc.timesigs)

    # ------------------------------------------------------------------ infilling
    @property
    def can_infill(self) -> bool:
        """Whether this model was trained for infilling (``train --infill``, FILL token)."""
        return self.config.train.infill > 0 and T.FILL in self.tokenizer.vocab

    def infill(self, song: Song, bars, like: Song | None = None, keep_latents: bool = False,
               rhythm=None, polyphony=None, genre: str | None = None,
               sampling: Sampling | None = None, _shifts: tuple[int, int] | None = None,
               **sampling_fields) -> symusic.Score:
        """Rewrite the bars in ``bars`` ("9-12", "3-4,11-12" or [(9, 12)], numbered from 1,
        inclusive) so that they lead from the bars before into the bars after; every other bar
        is kept note for note. Returns the whole song.

        The gap's latents come from the prior (new bars), from the song itself
        (``keep_latents``: a variation) or from ``like``'s bars of the same numbers (wrapping
        round a shorter song); its attributes are the original bars' unless ``rhythm`` /
        ``polyphony`` give classes (one value, or one per gap bar). Ranges are filled left to
        right, each reading the bars already filled."""
        sampling = self.sampling(sampling, other_attributes=infill_other_attributes(
            keep_latents, like, rhythm, polyphony, _shifts), **sampling_fields)
        g = self._genre(genre)
        if not self.can_infill:
            raise UserError(f"{self.run_dir} was trained without infilling: train a model with "
                            "--infill on a DATA_DIR prepared by this mtvae version")
        if like is not None and keep_latents:
            raise UserError("--like and --keep-latents exclude each other: choose one")
        enc = self.read(song)
        ranges = V.bar_ranges(bars, len(enc.bar_starts))
        like_z = None if like is None else self.encode(like).cpu()
        head, bars = self.fill(enc, ranges, sampling, like_z, keep_latents, rhythm, polyphony,
                               g, _shifts)
        return self.tokenizer.decode(head + [t for bar in bars for t in bar])

    def infill_context(self) -> int:
        """Tokens of context around a gap: the length of a training window."""
        return self.config.train.segments * self.config.model.seg_len

    @torch.no_grad()
    def fill(self, enc: EncodedInput, ranges, sampling: Sampling, like_z=None,
             keep_latents: bool = False, rhythm=None, polyphony=None, genre: int = 0,
             shifts=None, see_after: bool = True):
        """(tokens before the first bar, each bar's tokens) of a read song after writing the
        bars of ``ranges`` ([(a, b)], 0-based, b exclusive) again (see ``infill``; ``sampling``
        resolved). ``see_after=False``: the bars after a gap are not read, i.e. plain
        continuation of the bars before it with the same latents and attributes."""
        head = enc.ids[:int(enc.bar_starts[0])].tolist()
        bars = enc.bar_tokens()
        z = (self.encode(enc).cpu() if self.model.encoder is not None
             else torch.zeros(len(bars), self.config.model.d_latent))
        r, p = enc.rhythm.copy(), enc.polyphony.copy()
        top = self.n_classes - 1
        fill = int(self.tokenizer.vocab[T.FILL])
        for k, (a, b) in enumerate(ranges):
            n = b - a
            rg = self._per_bar(rhythm, n, None, "rhythm") if rhythm is not None else r[a:b].copy()
            pg = (self._per_bar(polyphony, n, None, "polyphony") if polyphony is not None
                  else p[a:b].copy())
            if shifts is not None:
                rg, pg = np.clip(rg + shifts[0], 0, top), np.clip(pg + shifts[1], 0, top)
            if keep_latents:
                zg = z[a:b].clone()
            elif like_z is not None:
                zg = like_z[torch.arange(a, b) % len(like_z)]
            else:  # new bars: the learnt prior reads the bars before the gap
                zg = self._z_prior(n, sampling.seed + 7919 * k, 0.0, rg, pg, genre,
                                   (z[:a], r[:a], p[:a]))
            ctx_bars = context_bars([len(x) for x in bars], a, b, self.infill_context(),
                                    see_after)
            prompt = [t for j in ctx_bars for t in bars[j]] + ([fill] if see_after else [])
            zz = torch.cat([z[ctx_bars], zg])
            cond = self.conditions(zz, np.r_[r[ctx_bars], rg], np.r_[p[ctx_bars], pg], genre)
            plan = Plan(cond, n, prompt=prompt, seed=sampling.seed + k,
                        timesigs=[int(t) for t in enc.timesigs[a:b]])
            new = self.generate([plan], sampling)[0]
            starts = [i for i, t in enumerate(new) if self.grammar.kind[t] == T.BAR] + [len(new)]
            bars[a:b] = [new[i:j] for i, j in zip(starts, starts[1:])]
            z[a:b], r[a:b], p[a:b] = zg, rg, pg
        return head, bars

    def interpolate(self, a: Song, b: Song, steps: int = 5, bars: int = 8,
                    sampling: Sampling | None = None, **sampling_fields) -> list[symusic.Score]:
        """Spherical interpolation between the bar latents of the first ``bars`` bars of a and
        b (seed 0 unless given, the same for every step)."""
        steps = V.integer("steps", steps, 2, V.MAX_PIECES)
        bars = V.bars(bars)
        sampling = self.sampling(sampling, default_seed=0, **sampling_fields)
        if self.model.encoder is None:
            raise UserError("this model was trained with --no-vae: it has no latents")
        ea, eb = self.read(a), self.read(b)
        for name, e in (("first", ea), ("second", eb)):
            if len(e.bar_starts) < bars:
                raise UserError(f"--bars {bars}: the {name} song has only {len(e.bar_starts)} bars")
        ea, eb = ea.first_bars(bars), eb.first_bars(bars)
        za, zb = self.encode(ea), self.encode(eb)
        out = []
        for t in np.linspace(0.0, 1.0, steps):
            z = slerp(za, zb, float(t))
            r = np.rint((1 - t) * ea.rhythm + t * eb.rhythm).astype(np.int64)
            p = np.rint((1 - t) * ea.polyphony + t * eb.polyphony).astype(np.int64)
            out.append(self._from_latents(z, r, p, 0, sampling,
                                          ea.timesigs if t <= 0.5 else eb.timesigs))
        return out


PRIORS = ("auto", "learnt", "normal")


def infill_other_attributes(keep_latents: bool, like, rhythm, polyphony, shifts=None) -> bool:
    """Whether an infill decodes latents taken from a song (its own, or ``like``'s) with other
    attributes than those bars' (given classes, or shifts): its default guidance is then 0."""
    fixed = keep_latents or like is not None  # latents from a song, not from the prior
    return fixed and (rhythm is not None or polyphony is not None or any(shifts or ()))
SAMPLING_FIELDS = {f.name for f in fields(Sampling)} - {"max_bar_tokens"}


def _tail_bar(bar_starts: np.ndarray, n_tokens: int, budget: int) -> int:
    """The first bar of the shortest run of last bars that holds at least ``budget`` tokens."""
    need = n_tokens - budget
    if need <= 0:
        return 0
    return max(int(np.searchsorted(bar_starts, need, side="right")) - 1, 0)
