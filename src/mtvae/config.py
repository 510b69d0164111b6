"""Typed configuration: model, training and sampling settings, saved as JSON with every run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import UserError


@dataclass
class ModelConfig:
    vocab_size: int = 518
    n_genres: int = 1  # index 0 is "unknown"
    n_attr_classes: int = 8
    pad_id: int = 0
    d_model: int = 256
    n_heads: int = 4
    enc_layers: int = 3
    dec_layers: int = 8
    d_ff: int = 1024
    d_latent: int = 64
    d_attr: int = 32  # embedding size of each bar attribute and of the genre
    max_bar_len: int = 192  # the encoder reads at most this many tokens of a bar
    seg_len: int = 128  # decoder segment (tokens)
    mem_len: int = 256  # Transformer-XL memory (tokens)
    cmem_len: int = 64  # compressed memory slots, each summarising cmem_ratio tokens
    cmem_ratio: int = 4
    dropout: float = 0.1
    use_vae: bool = True
    use_memory: bool = True
    use_compression: bool = True
    # log-variance of the posterior at initialisation (the bias of its logvar half): 0 starts
    # z as mu plus unit noise, a negative value starts it narrow (train --init-logvar); with
    # a 128-nat KL target, -4 lets the decoder learn to read z (docs/RESULTS.md, "Latents")
    init_logvar: float = -4.0

    def __post_init__(self):
        from . import validate as V

        for name, lo, hi in (("vocab_size", 8, 2**20), ("n_genres", 1, 2**16),
                             ("n_attr_classes", 1, 256), ("pad_id", 0, 2**20), ("d_model", 2, 16384),
                             ("n_heads", 1, 256), ("enc_layers", 1, 128), ("dec_layers", 1, 128),
                             ("d_ff", 1, 65536), ("d_latent", 1, 4096), ("d_attr", 1, 4096),
                             ("max_bar_len", 1, 65536), ("seg_len", 1, 65536),
                             ("mem_len", 0, 65536), ("cmem_len", 0, 65536), ("cmem_ratio", 1, 64)):
            V.integer(name, getattr(self, name), lo, hi)
        V.number("dropout", self.dropout, 0.0, 0.9)
        V.number("init_logvar", self.init_logvar, -10.0, 10.0)
        if self.pad_id >= self.vocab_size:
            raise UserError(f"pad_id {self.pad_id} is outside the vocabulary ({self.vocab_size})")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise UserError("d_model must be divisible by n_heads, into heads of even size")
        if self.use_compression and self.use_memory and (
            self.seg_len % self.cmem_ratio or self.mem_len % self.cmem_ratio
        ):
            raise UserError("seg_len and mem_len must be multiples of cmem_ratio")

    @property
    def effective_mem_len(self) -> int:
        return self.mem_len if self.use_memory else 0

    @property
    def effective_cmem_len(self) -> int:
        return self.cmem_len if (self.use_memory and self.use_compression) else 0


PRESETS: dict[str, dict] = {
    # well under 1M parameters: for tests and the quick demo
    "tiny": dict(d_model=64, n_heads=2, enc_layers=1, dec_layers=2, d_ff=192, d_latent=16,
                 d_attr=8, max_bar_len=96, seg_len=32, mem_len=64, cmem_len=16, cmem_ratio=4),
    # ~4M: narrower and shallower than small, ~2x the tokens per CPU hour, and its weights
    # (~15 MB) stay in a CPU's cache when it writes one token at a time
    "compact": dict(d_model=192, n_heads=4, enc_layers=2, dec_layers=6, d_ff=768, d_latent=64,
                    d_attr=32, max_bar_len=192, seg_len=128, mem_len=256, cmem_len=64),
    # ~10M: trains on a CPU in an hour
    "small": dict(d_model=256, n_heads=4, enc_layers=3, dec_layers=8, d_ff=1024, d_latent=64,
                  d_attr=32, max_bar_len=192, seg_len=128, mem_len=256, cmem_len=64),
    # ~40M: for a GPU
    "base": dict(d_model=512, n_heads=8, enc_layers=3, dec_layers=7, d_ff=2048, d_latent=128,
                 d_attr=64, max_bar_len=256, seg_len=256, mem_len=512, cmem_len=128),
}


@dataclass
class TrainConfig:
    preset: str = "small"
    max_steps: int = 20000
    max_minutes: float | None = None
    batch_size: int = 8
    segments: int = 4  # segments per training example; memory is carried across them
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    val_every: int = 200
    val_windows: int = 64  # validation windows (fixed, whole examples)
    patience: int = 10  # validations without improvement before stopping
    # the latent (docs/RESULTS.md, "Latents"): the KL weight, warmed up linearly, and free
    # bits, a KL target of free_bits × d_latent nats per bar (128 for `small`): the latent
    # carries the bar, and a learnt prior (prior_steps) samples it.
    beta_max: float = 1.0
    beta_warmup_steps: int = 2000
    free_bits: float = 2.0  # nats per latent dimension
    recon_weight: float = 1.0  # weight of the compression's attention-reconstruction loss
    transpose: int = 5  # random transposition in [-transpose, transpose] semitones
    tempo_jitter: float = 0.5  # probability to move tempo tokens by one class
    log_every: int = 10
    # share of training windows arranged for infilling (bars before a gap, bars after it,
    # FILL, the gap's bars); 0 in a DATA_DIR prepared before the FILL token existed
    infill: float = 0.5
    # share of training windows whose genre is given as "unknown" (index 0), so that the
    # embedding used when no genre is asked (sample, reconstruct, transfer, continue, infill
    # without --genre) is trained too, in the model and in the learnt prior
    genre_dropout: float = 0.1
    # after training, fit a learnt prior over bar latents (``mtvae prior``) for at most this
    # many steps (0: none; sample then draws from N(0, I) until ``mtvae prior`` is run)
    prior_steps: int = 1500

    def __post_init__(self):
        from . import validate as V

        if self.preset not in PRESETS:
            raise UserError(f"--preset {self.preset!r}: choose from {', '.join(PRESETS)}")
        V.integer("max_steps", self.max_steps, 1, 10**9)
        V.number("max_minutes", self.max_minutes, 0.0, 10**7, lo_open=True, allow_none=True)
        V.integer("batch_size", self.batch_size, 1, 4096)
        V.integer("segments", self.segments, 1, 1024)
        V.number("lr", self.lr, 0.0, 1.0)
        V.number("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        V.integer("warmup_steps", self.warmup_steps, 0, 10**9)
        V.number("weight_decay", self.weight_decay, 0.0, 10.0)
        V.number("grad_clip", self.grad_clip, 0.0, 10**6, lo_open=True)
        V.integer("seed", self.seed, 0, 2**63 - 1)
        V.integer("val_every", self.val_every, 1, 10**9)
        V.integer("val_windows", self.val_windows, 1, 10**6)
        V.integer("patience", self.patience, 1, 10**6)
        V.number("beta_max", self.beta_max, 0.0, 100.0)
        V.integer("beta_warmup_steps", self.beta_warmup_steps, 0, 10**9)
        V.number("free_bits", self.free_bits, 0.0, 100.0)
        V.number("recon_weight", self.recon_weight, 0.0, 100.0)
        V.integer("transpose", self.transpose, 0, 24)
        V.number("tempo_jitter", self.tempo_jitter, 0.0, 1.0)
        V.integer("log_every", self.log_every, 1, 10**9)
        V.number("infill", self.infill, 0.0, 1.0)
        V.number("genre_dropout", self.genre_dropout, 0.0, 1.0)
        V.integer("prior_steps", self.prior_steps, 0, 10**7)


@dataclass
class PriorConfig:
    """The learnt prior over bar latents (``mtvae prior``), saved in the metadata of
    ``prior.safetensors`` in the RUN_DIR; the first three fields come from the run."""

    d_latent: int = 64
    n_attr_classes: int = 8
    n_genres: int = 1
    d_attr: int = 16
    d_hidden: int = 256  # runs get 4 per latent dimension, at least 64 (train.prior_config)
    n_layers: int = 2
    n_mix: int = 4  # Gaussian components per bar
    dropout: float = 0.3
    steps: int = 1500
    batch_size: int = 32
    chunk_bars: int = 32  # bars per training sequence
    lr: float = 1e-3
    # training songs encoded (the first of a seeded shuffle), each a run of bars_per_song
    # consecutive bars: encoding is the slow part, and more songs beat longer ones
    max_songs: int = 1000
    bars_per_song: int = 32
    seed: int = 0
    # share of training runs of bars given the genre "unknown" (the run's --genre-dropout)
    genre_dropout: float = 0.0

    def __post_init__(self):
        from . import validate as V

        for name, lo, hi in (("d_latent", 1, 4096), ("n_attr_classes", 1, 256),
                             ("n_genres", 1, 2**16), ("d_attr", 1, 4096), ("d_hidden", 1, 16384),
                             ("n_layers", 1, 16), ("n_mix", 1, 64), ("steps", 1, 10**7),
                             ("batch_size", 1, 4096), ("chunk_bars", 2, 4096),
                             ("max_songs", 1, 10**7), ("bars_per_song", 2, 10**6),
                             ("seed", 0, 2**31 - 1)):
            V.integer(name, getattr(self, name), lo, hi)
        V.number("lr", self.lr, 1e-7, 1.0)
        V.number("dropout", self.dropout, 0.0, 0.9)
        V.number("genre_dropout", self.genre_dropout, 0.0, 1.0)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str, where: str) -> PriorConfig:
        try:
            raw = json.loads(text)
        except (TypeError, ValueError) as e:
            raise UserError(f"{where}: the prior's config is not valid JSON ({e})") from None
        return _build(cls, raw, f"{where} prior config")


@dataclass
class RunConfig:
    """Everything saved as ``config.json`` beside the weights."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: dict = field(default_factory=dict)  # DATA_DIR, genres, attribute edges, tokenizer

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str, where: str = "config.json") -> RunConfig:
        """Parse and check every field: a missing, unknown or mistyped one is a ``UserError``."""
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise UserError(f"{where} is not valid JSON ({e})") from None
        if not isinstance(raw, dict) or not {"model", "train", "data"} <= set(raw):
            raise UserError(f"{where} must be an object with 'model', 'train' and 'data'")
        if not isinstance(raw["data"], dict):
            raise UserError(f"{where}: 'data' must be an object")
        return cls(model=_build(ModelConfig, raw["model"], f"{where} model"),
                   train=_build(TrainConfig, raw["train"], f"{where} train"),
                   data=raw["data"])

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read {path}: {e}") from None
        return cls.from_json(text, str(path))


# Fields added after runs were first saved, with the value that reproduces an older run that
# lacks them; any other missing field is an error.
ADDED_LATER = {"ModelConfig": {"init_logvar": 0.0},
               "TrainConfig": {"infill": 0.0, "prior_steps": 0, "genre_dropout": 0.0},
               "PriorConfig": {"genre_dropout": 0.0}}

# Options that lost and were removed (docs/RESULTS.md, "What was tried"), with the value that
# means "off": a saved run that has them off loads; one that turned one on is refused.
# ``aux_head`` was on by default, but its loss weight ``aux_weight`` was 0, so its head never
# trained: runs that carry it load and the head's tensors are skipped (``IGNORED_WEIGHTS``).
REMOVED = {"ModelConfig": {"aux_head": (True, False), "bar_bias": (False,), "note_bag": (False,),
                           "latent_slots": (0,)},
           "TrainConfig": {"beta_cycle_steps": (0,), "word_dropout": (0, 0.0),
                           "aux_weight": (0, 0.0), "context_dropout": (0, 0.0),
                           "bag_weight": None}}  # None: any value (it weighed the note bag)
IGNORED_WEIGHTS = ("aux.",)  # tensors of removed parts that older weights files may hold

_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
          "float | None": (int, float, type(None))}


def _build(kind, values, where: str):
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected an object")
    known = {f.name: f for f in fields(kind)}
    values = ADDED_LATER.get(kind.__name__, {}) | values
    for name, off in REMOVED.get(kind.__name__, {}).items():
        if name in values:
            v = values.pop(name)
            if off is not None and (isinstance(v, bool) != isinstance(off[0], bool) or v not in off):
                raise UserError(f"{where}: {name} = {v!r} turns on an option this mtvae no "
                                "longer has (removed; docs/RESULTS.md, 'What was tried')")
    missing = sorted(set(known) - set(values))
    unknown = sorted(set(values) - set(known))
    if missing or unknown:
        raise UserError(f"{where}: " + "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else [])
            + ([f"unknown {', '.join(unknown)}"] if unknown else [])))
    for name, f in known.items():
        v = values[name]
        ok = _TYPES.get(str(f.type), (object,))
        if not isinstance(v, ok) or (isinstance(v, bool) and bool not in ok):
            raise UserError(f"{where}: {name} = {v!r} should be {f.type}")
    try:
        return kind(**values)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None


def model_config(preset: str, **overrides) -> ModelConfig:
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return ModelConfig(**(PRESETS[preset] | overrides))
