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

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise UserError("d_model must be divisible by n_heads")
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
    beta_max: float = 1.0
    beta_warmup_steps: int = 2000
    beta_cycle_steps: int = 0  # >0: cyclic annealing with this period
    free_bits: float = 0.25  # nats per latent dimension
    recon_weight: float = 1.0  # weight of the compression's attention-reconstruction loss
    transpose: int = 5  # random transposition in [-transpose, transpose] semitones
    tempo_jitter: float = 0.5  # probability to move tempo tokens by one class
    log_every: int = 10


@dataclass
class RunConfig:
    """Everything saved as ``config.json`` beside the weights."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: dict = field(default_factory=dict)  # DATA_DIR, genres, attribute edges, tokenizer

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        raw = json.loads(text)
        return cls(
            model=_build(ModelConfig, raw.get("model", {})),
            train=_build(TrainConfig, raw.get("train", {})),
            data=raw.get("data", {}),
        )

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        return cls.from_json(Path(path).read_text())


def _build(kind, values: dict):
    names = {f.name for f in fields(kind)}
    return kind(**{k: v for k, v in values.items() if k in names})


def model_config(preset: str, **overrides) -> ModelConfig:
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return ModelConfig(**(PRESETS[preset] | overrides))
