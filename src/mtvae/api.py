"""The Python API: ``MusicVAE.load(run_dir)`` then sample, continue, interpolate, reconstruct,
transfer, infill and encode. Inputs are MIDI paths or ``symusic.Score``; outputs are ``symusic.Score``.

```python
from mtvae import MusicVAE
m = MusicVAE.load("runs/pop")
score = m.sample(bars=16, genre="BluesRock", temperature=0.9, seed=1)
score.dump_midi("out.mid")
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import symusic
import torch

from . import checkpoint as ck
from . import validate as V
from .config import RunConfig
from .data import tokens as T
from .data.midi import DEFAULT_LIMITS, Limits, read_midi
from .data.windows import pack_bars
from .errors import UserError
from .generate import PITCH, PITCHDRUM, Grammar, Plan, Sampling, generate
from .model import MTVAE

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


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of row vectors (linear where they are nearly parallel)."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.arccos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    lin = (1 - t) * a + t * b
    sph = torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b
    return torch.where(so.abs() < 1e-4, lin, sph)


class MusicVAE:
    def __init__(self, model: MTVAE, config: RunConfig, tokenizer, run_dir: Path, weights: Path,
                 limits: Limits = DEFAULT_LIMITS, prior=None):
        self.model, self.config, self.tokenizer = model, config, tokenizer
        # the learnt prior over bar latents (``mtvae prior``), or None: z ~ N(0, I)
        self.prior = prior
        self.run_dir, self.weights = run_dir, weights
        self.tables = T.TokenTables(tokenizer)
        self.grammar = Grammar(tokenizer.vocab)
        self.device = next(model.parameters()).device
        self.limits = limits  # the MIDI reader's guards for every song this model reads
        self.progress = False  # a progress bar for generation (the CLI turns it on)
        self._hash: str | None = None  # the weights file's hash, once read
        self._guidance: float | None = None  # None: the default (see ``guidance``)
        self.last_guidance = 0.0  # the guidance of the last generating call (settings.json)

    @property
    def guidance(self) -> float:
        """Latent guidance w of every decoding from bar latents: each token's logits are
        moved away from what the decoder would write with z = 0 by w times the difference
        (classifier-free guidance, with "no latent" as the unconditional model). 0 decodes
        plainly; the default 0.5 makes samples, reconstructions and infilled bars follow their
        latents more closely (docs/RESULTS.md, session 9). Each step decodes twice. Unless set,
        a song's own (or ``like``'s) latents decoded with other attributes than their bars'
        (``transfer`` shifts, ``infill`` classes with kept latents) get 0: guidance pulls
        towards the latents, which hold the bars' own rhythm and polyphony."""
        return DEFAULT_GUIDANCE if self._guidance is None else self._guidance

    @guidance.setter
    def guidance(self, w: float | None) -> None:
        self._guidance = None if w is None else V.number("guidance", w, 0.0, 10.0)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, run_dir: str | os.PathLike, device: str = "cpu", weights: str = ck.BEST,
             limits: Limits = DEFAULT_LIMITS, prior: str = "auto",
             guidance: float | None = None) -> MusicVAE:
        """``prior``: where new bars' latents come from: "learnt" (RUN_DIR/prior.safetensors,
        made by ``mtvae prior``), "normal" (N(0, I), what the VAE was trained with) or
        "auto" (the learnt prior when the run has one). ``guidance``: see
        ``MusicVAE.guidance`` (None: the default)."""
        run_dir = Path(run_dir)
        if prior not in PRIORS:
            raise UserError(f"--prior {prior!r}: choose from {', '.join(PRIORS)}")
        if not run_dir.is_dir():
            raise UserError(f"RUN_DIR not found: {run_dir}")
        dev = V.device(device)
        wpath = run_dir / weights
        if not (run_dir / ck.CONFIG).is_file() or not wpath.is_file():
            raise UserError(f"{run_dir} has no trained weights ({ck.CONFIG} and {weights}): "
                            "train it first with 'mtvae train'")
        cfg = RunConfig.load(run_dir / ck.CONFIG)
        # songs are re-barred as the training data was (older runs: declared meters kept)
        limits = replace(limits, meter=cfg.data.get("meter", "keep"))
        if cfg.data.get("bpe"):
            raise UserError("this run was trained on BPE tokens; generation needs a DATA_DIR "
                            "prepared without --bpe-vocab")
        tokenizer = ck.load_tokenizer(run_dir)
        if len(tokenizer.vocab) != cfg.model.vocab_size:
            raise UserError(f"{run_dir}/tokenizer.json has {len(tokenizer.vocab)} tokens but the "
                            f"model was built for {cfg.model.vocab_size}")
        model = MTVAE(cfg.model)
        ck.load_weights(model, wpath)
        model.to(dev).eval()
        learnt, weights_hash = None, None
        if prior == "learnt" or (prior == "auto" and (run_dir / ck.PRIOR).is_file()):
            weights_hash = ck.file_hash(wpath)
            learnt = load_prior(run_dir, wpath, weights_hash, cfg).to(dev)
        elif prior == "auto" and cfg.model.use_vae and cfg.train.prior_steps > 0:
            import sys

            print(f"note: {run_dir} has no learnt prior (its training stopped before fitting "
                  f"one): new bars' latents come from N(0, I); 'mtvae prior {run_dir} "
                  "DATA_DIR' fits it", file=sys.stderr)
        m = cls(model, cfg, tokenizer, run_dir, wpath, limits, learnt)
        m.guidance = guidance
        m._hash = weights_hash  # read once: the prior's check and model_hash share it
        return m

    @property
    def genres(self) -> list[str]:
        return list(self.config.data.get("genres", ["unknown"]))

    def model_hash(self) -> str:
        if self._hash is None:
            self._hash = ck.file_hash(self.weights)
        return self._hash

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
        if len(enc.bar_starts) == 0 or not np.any((kinds == PITCH) | (kinds == PITCHDRUM)):
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

    def encode(self, song: Song, bars: int | None = None) -> torch.Tensor:
        """Posterior means of the bar latents: [n_bars, d_latent]."""
        bars = V.bars(bars, hi=self.limits.max_bars, allow_none=True)
        return self._latents(self.read(song).first_bars(bars))

    @torch.no_grad()
    def _latents(self, enc: EncodedInput) -> torch.Tensor:
        """Posterior means of an already-read song's bars (None without an encoder)."""
        if self.model.encoder is None:
            raise UserError("this model was trained with --no-vae: it has no latents")
        L = self.config.model.max_bar_len
        ends = list(enc.bar_starts[1:]) + [len(enc.ids)]
        bar_ids = [enc.ids[a:b][:L] for a, b in zip(enc.bar_starts, ends)]
        per_row = 16  # bars per encoder row: attention cost grows with the row's square
        rows = [bar_ids[i:i + per_row] for i in range(0, len(bar_ids), per_row)]
        tokens, bar = pack_bars(rows, self.config.model.pad_id)
        mu, _ = self.model.encode(tokens.to(self.device), bar.to(self.device), per_row)
        return mu.flatten(0, 1)[:len(bar_ids)]

    def _own_latents(self, enc: EncodedInput):
        return self._latents(enc) if self.model.encoder is not None else None

    @torch.no_grad()
    def teacher_forced_logits(self, enc: EncodedInput) -> torch.Tensor:
        """Next-token logits [len(ids) - 1, V] of a read song, z = posterior mean."""
        ids = torch.from_numpy(enc.ids)[None].to(self.device)
        cond = self._cond(self._own_latents(enc), enc.rhythm, enc.polyphony, 0)
        bar_of = torch.from_numpy(np.searchsorted(enc.bar_starts, np.arange(len(enc.ids) - 1),
                                                  side="right") - 1).to(self.device)
        return self.model.decode(ids[:, :-1], cond[bar_of][None])[0][0]

    # ------------------------------------------------------------------ decoding
    def _classes(self, values) -> torch.Tensor:
        """Bar attribute classes, clipped to the model's, as a [1, N] tensor."""
        return torch.as_tensor(np.clip(values, 0, self.n_classes - 1), device=self.device)[None]

    def _cond(self, z, rhythm, polyphony, genre: int) -> torch.Tensor:
        r, p = self._classes(rhythm), self._classes(polyphony)
        zz = None if self.model.encoder is None else z.to(self.device)[None]
        g = torch.tensor([genre], device=self.device)
        return self.model.bar_conditions(zz, r, p, g)[0]

    def _decode(self, plans: list[Plan], sampling: Sampling, prompts: list[list[int]] | None = None,
                use_cache: bool = True) -> list[symusic.Score]:
        outs = self._generate(plans, sampling, use_cache)
        scores = []
        for i, new in enumerate(outs):
            ids = (prompts[i] if prompts else []) + new
            scores.append(self.tokenizer.decode(ids))
        return scores

    def _generate(self, plans: list[Plan], sampling: Sampling, use_cache: bool = True):
        """Each plan's new tokens, with a progress bar when ``self.progress``."""
        from tqdm.auto import tqdm

        bar = tqdm(desc="generate", unit="tok", disable=not self.progress, leave=False)
        outs = generate(self.model, self.grammar, plans, sampling, use_cache=use_cache,
                        progress=lambda n: bar.update(n - bar.n))
        bar.close()
        return outs

    def _sampling(self, temperature, top_k, top_p, other_attributes: bool = False) -> Sampling:
        """``other_attributes``: fixed latents are decoded with attributes they do not hold
        (no guidance unless it was set; see ``guidance``)."""
        w = 0.0 if other_attributes and self._guidance is None else self.guidance
        self.last_guidance = w
        return Sampling(*V.sampling(temperature, top_k, top_p), guidance=w)

    @staticmethod
    def _seed(seed) -> int:
        seed = V.seed(seed)
        return int(np.random.SeedSequence().entropy % 2**31) if seed is None else seed

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
               polyphony=None, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None, meter: str | None = None,
               coherence: float = 0.0):
        """New pieces from the prior, every bar in ``meter`` (default: the training data's
        most common). ``coherence``: the share of each bar latent's variance that all bars of
        a piece share (0: independent bars, as in training; 1: one latent for every bar).
        Returns a Score (n=1) or a list of n Scores."""
        bars = V.bars(bars)
        ts = self.timesig_id(meter if meter is not None else self.default_meter())
        n = V.integer("n", n, 1, V.MAX_PIECES)
        coherence = V.number("coherence", coherence, 0.0, 1.0)
        sampling = self._sampling(temperature, top_k, top_p)
        seed = self._seed(seed)
        g = self._genre(genre)
        plans = []
        for i in range(n):
            rng = np.random.default_rng([seed, i])
            r = self._per_bar(rhythm, bars, rng, "rhythm")
            p = self._per_bar(polyphony, bars, rng, "polyphony")
            cond = self._cond(self._z_prior(bars, seed + i, coherence, r, p, g), r, p, g)
            plans.append(Plan(cond, bars, seed=seed + i, timesigs=[ts]))
        scores = self._decode(plans, sampling)
        return scores[0] if n == 1 else scores

    def prompt_context_tokens(self) -> int:
        """How much of a prompt the model reads: four times what its memories can hold."""
        m = self.config.model
        return 4 * (m.seg_len + m.effective_mem_len + m.effective_cmem_len * m.cmem_ratio)

    def continue_(self, prompt: Song, bars: int = 8, genre: str | None = None, rhythm=None,
                  polyphony=None, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, seed: int | None = None,
                  meter: str | None = None) -> symusic.Score:
        """The prompt fills the memory, then ``bars`` new bars follow (prompt + continuation).

        The model reads the prompt's last whole bars covering ``prompt_context_tokens()`` (four
        times what its memories hold, so older bars could not change what it writes); the
        output holds the whole prompt. New bars keep the prompt's last meter unless ``meter``."""
        bars = V.bars(bars)
        ts = None if meter is None else self.timesig_id(meter)
        sampling = self._sampling(temperature, top_k, top_p)
        seed = self._seed(seed)
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
        cond = self._cond(z, np.concatenate([tail.rhythm, r]), np.concatenate([tail.polyphony, p]), g)
        plan = Plan(cond, bars, prompt=tail.ids.tolist(), seed=seed, timesigs=[ts])
        return self._decode([plan], sampling, [full_ids])[0]

    def _from_latents(self, z, rhythm, polyphony, genre: int, seed: int, sampling: Sampling,
                      timesigs=None):
        """Decode one piece of ``len(rhythm)`` bars from its bar latents and attributes."""
        cond = self._cond(z, rhythm, polyphony, genre)
        ts = None if timesigs is None else [int(t) for t in timesigs]
        return self._decode([Plan(cond, len(rhythm), seed=seed, timesigs=ts)], sampling)[0]

    def reconstruct(self, song: Song, bars: int | None = 16, genre: str | None = None,
                    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                    seed: int = 0) -> symusic.Score:
        """Encode a song's first ``bars`` bars (None: all) and decode them again."""
        return self.transfer(song, genre=genre, bars=bars, temperature=temperature, top_k=top_k,
                             top_p=top_p, seed=seed)

    def transfer(self, song: Song, genre: str | None = None, rhythm_shift: int = 0,
                 polyphony_shift: int = 0, bars: int | str | None = 16, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int = 0) -> symusic.Score:
        """Keep the song's bar latents; change its genre and/or shift its bar attributes
        (shifts are in classes, at most ``n_classes - 1`` either way; results are clipped).

        ``bars``: a number re-decodes the song's first ``bars`` bars (None: all); bar ranges
        ("5-8", "3-4,11-12", numbered from 1) edit only those bars, in place, and keep every
        other bar note for note (``infill`` with the song's own latents)."""
        top = self.n_classes - 1
        rs = V.integer("rhythm_shift", rhythm_shift, -top, top)
        ps = V.integer("polyphony_shift", polyphony_shift, -top, top)
        if isinstance(bars, (str, list, tuple)) and not (isinstance(bars, str) and bars.isdigit()):
            return self.infill(song, bars, keep_latents=True, genre=genre, temperature=temperature,
                               top_k=top_k, top_p=top_p, seed=seed, _shifts=(rs, ps))
        bars = V.bars(int(bars) if isinstance(bars, str) else bars, hi=V.MAX_GEN_BARS,
                      allow_none=True)
        sampling = self._sampling(temperature, top_k, top_p, other_attributes=bool(rs or ps))
        seed = self._seed(seed)
        g = self._genre(genre)
        enc = self.read(song).first_bars(bars)
        if len(enc.bar_starts) > V.MAX_GEN_BARS:
            enc = enc.first_bars(V.MAX_GEN_BARS)
        return self._from_latents(self._own_latents(enc), enc.rhythm + rs, enc.polyphony + ps,
                                  g, seed, sampling, enc.timesigs)

    # ------------------------------------------------------------------ infilling
    @property
    def can_infill(self) -> bool:
        """Whether this model was trained for infilling (``train --infill``, FILL token)."""
        return self.config.train.infill > 0 and T.FILL in self.tokenizer.vocab

    def infill(self, song: Song, bars, like: Song | None = None, keep_latents: bool = False,
               rhythm=None, polyphony=None, genre: str | None = None, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
               _shifts: tuple[int, int] | None = None) -> symusic.Score:
        """Rewrite the bars in ``bars`` ("9-12", "3-4,11-12" or [(9, 12)], numbered from 1,
        inclusive) so that they lead from the bars before into the bars after; every other bar
        is kept note for note. Returns the whole song.

        The gap's latents come from the prior (new bars), from the song itself
        (``keep_latents``: a variation) or from ``like``'s bars of the same numbers (wrapping
        round a shorter song); its attributes are the original bars' unless ``rhythm`` /
        ``polyphony`` give classes (one value, or one per gap bar). Ranges are filled left to
        right, each reading the bars already filled."""
        fixed = keep_latents or like is not None  # latents from a song, not from the prior
        sampling = self._sampling(temperature, top_k, top_p, other_attributes=fixed and (
            rhythm is not None or polyphony is not None or any(_shifts or ())))
        seed = self._seed(seed)
        g = self._genre(genre)
        if not self.can_infill:
            raise UserError(f"{self.run_dir} was trained without infilling: train a model with "
                            "--infill on a DATA_DIR prepared by this mtvae version")
        if like is not None and keep_latents:
            raise UserError("--like and --keep-latents exclude each other: choose one")
        enc = self.read(song)
        ranges = V.bar_ranges(bars, len(enc.bar_starts))
        like_z = None if like is None else self._latents(self.read(like)).cpu()
        head, bars = self._infill(enc, ranges, like_z, keep_latents, rhythm, polyphony, g,
                                  sampling, seed, _shifts)
        return self.tokenizer.decode(head + [t for bar in bars for t in bar])

    def infill_context(self) -> int:
        """Tokens of context around a gap: the length of a training window."""
        return self.config.train.segments * self.config.model.seg_len

    @torch.no_grad()
    def _infill(self, enc: EncodedInput, ranges, like_z, keep_latents: bool, rhythm, polyphony,
                genre: int, sampling: Sampling, seed: int, shifts=None, see_after: bool = True):
        """(tokens before the first bar, each bar's tokens) after filling ``ranges``.
        ``see_after=False`` (for evaluation): the bars after a gap are not read, i.e. plain
        continuation of the bars before it with the same latents and attributes."""
        head = enc.ids[:int(enc.bar_starts[0])].tolist()
        bars = enc.bar_tokens()
        z = (self._latents(enc).cpu() if self.model.encoder is not None
             else torch.zeros(len(bars), self.config.model.d_latent))
        r, p = enc.rhythm.copy(), enc.polyphony.copy()
        top = self.n_classes - 1
        fill = int(self.tokenizer.vocab[T.FILL])
        ctx = self.infill_context()
        mean_bar = max(len(enc.ids) / len(bars), 1.0)
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
                zg = self._z_prior(n, seed + 7919 * k, 0.0, rg, pg, genre, (z[:a], r[:a], p[:a]))
            # whole bars after the gap (up to half the context, at least one), then before it
            after, used = [], 0
            for j in range(b, len(bars) if see_after else b):
                if after and used + len(bars[j]) > ctx // 2:
                    break
                after.append(j)
                used += len(bars[j])
            budget = ctx - used - n * mean_bar
            before = []
            for j in range(a - 1, -1, -1):
                if before and len(bars[j]) > budget:
                    break
                before.insert(0, j)
                budget -= len(bars[j])
            ctx_bars = before + after
            prompt = [t for j in ctx_bars for t in bars[j]] + ([fill] if see_after else [])
            zz = torch.cat([z[ctx_bars], zg])
            cond = self._cond(zz, np.r_[r[ctx_bars], rg], np.r_[p[ctx_bars], pg], genre)
            plan = Plan(cond, n, prompt=prompt, seed=seed + k,
                        timesigs=[int(t) for t in enc.timesigs[a:b]])
            new = self._generate([plan], sampling)[0]
            starts = [i for i, t in enumerate(new) if self.grammar.kind[t] == T.BAR] + [len(new)]
            bars[a:b] = [new[i:j] for i, j in zip(starts, starts[1:])]
            z[a:b], r[a:b], p[a:b] = zg, rg, pg
        return head, bars

    def interpolate(self, a: Song, b: Song, steps: int = 5, bars: int = 8,
                    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                    seed: int = 0) -> list[symusic.Score]:
        """Spherical interpolation between the bar latents of the first ``bars`` bars of a and b."""
        steps = V.integer("steps", steps, 2, V.MAX_PIECES)
        bars = V.bars(bars)
        sampling = self._sampling(temperature, top_k, top_p)
        seed = self._seed(seed)
        if self.model.encoder is None:
            raise UserError("this model was trained with --no-vae: it has no latents")
        ea, eb = self.read(a), self.read(b)
        for name, e in (("first", ea), ("second", eb)):
            if len(e.bar_starts) < bars:
                raise UserError(f"--bars {bars}: the {name} song has only {len(e.bar_starts)} bars")
        ea, eb = ea.first_bars(bars), eb.first_bars(bars)
        za, zb = self._latents(ea), self._latents(eb)
        out = []
        for t in np.linspace(0.0, 1.0, steps):
            z = slerp(za, zb, float(t))
            r = np.rint((1 - t) * ea.rhythm + t * eb.rhythm).astype(np.int64)
            p = np.rint((1 - t) * ea.polyphony + t * eb.polyphony).astype(np.int64)
            out.append(self._from_latents(z, r, p, 0, seed, sampling,
                                          ea.timesigs if t <= 0.5 else eb.timesigs))
        return out

    def token_accuracy(self, song: Song, bars: int | None = 16) -> float:
        """Teacher-forced next-token accuracy with z = posterior mean."""
        bars = V.bars(bars, hi=V.MAX_GEN_BARS, allow_none=True)
        enc = self.read(song).first_bars(bars)
        if len(enc.bar_starts) > V.MAX_GEN_BARS:
            enc = enc.first_bars(V.MAX_GEN_BARS)
        pred = self.teacher_forced_logits(enc).argmax(-1).cpu().numpy()
        return float(np.mean(pred == enc.ids[1:]))


PRIORS = ("auto", "learnt", "normal")
DEFAULT_GUIDANCE = 0.5  # MusicVAE.guidance


def load_prior(run_dir: Path, weights: Path, weights_hash: str, cfg: RunConfig):
    """RUN_DIR/prior.safetensors as a ``LatentPrior``, refused with one line when it is
    missing, damaged, or was fitted to other weights than ``weights`` (whose file hash is
    ``weights_hash``)."""
    import json

    from .config import PriorConfig
    from .model.prior import LatentPrior

    path = run_dir / ck.PRIOR
    if not path.is_file():
        raise UserError(f"{run_dir} has no learnt prior: fit one with 'mtvae prior {run_dir} "
                        "DATA_DIR' (or use --prior normal)")
    meta = ck.weights_metadata(path)
    pc = PriorConfig.from_json(meta.get("prior_config", ""), str(path))
    try:
        fitted_to = json.loads(meta.get("summary", "{}")).get("weights_hash")
    except ValueError:
        fitted_to = None
    if fitted_to != weights_hash:
        raise UserError(f"{path} was fitted to other weights than {weights.name}: fit it again "
                        f"with 'mtvae prior {run_dir} DATA_DIR' (or use --prior normal)")
    if (pc.d_latent, pc.n_attr_classes, pc.n_genres) != (
            cfg.model.d_latent, cfg.model.n_attr_classes, cfg.model.n_genres):
        raise UserError(f"{path} does not fit this run's config.json")
    prior = LatentPrior(pc)
    ck.load_weights(prior, path)
    return prior.eval()


def _tail_bar(bar_starts: np.ndarray, n_tokens: int, budget: int) -> int:
    """The first bar of the shortest run of last bars that holds at least ``budget`` tokens."""
    need = n_tokens - budget
    if need <= 0:
        return 0
    return max(int(np.searchsorted(bar_starts, need, side="right")) - 1, 0)
