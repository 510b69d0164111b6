"""The run folder (RUN_DIR): what a run holds, how each file is read and written, in one place.

``train``, the learnt-prior stage, the API, ``evaluate`` and the benchmarks open a RUN_DIR
through ``RunDir`` only; each file is read once per ``RunDir`` and checked as it is read (a
missing, damaged or foreign file is one line, never a traceback). How files reach the disk
(atomic writes, checkpoint sets, recovery, the lock) is ``checkpoint.py``'s.

::

    RUN_DIR/  config.json        RunConfig (model, train and data settings)
              tokenizer.json     the DATA_DIR's tokenizer, copied
              model.safetensors  best weights (by validation)     } one checkpoint set,
              last.safetensors   last weights                     } committed together
              training_state.pt  optimizer, scheduler, RNG, step  } (checkpoint.json: journal)
              prior.safetensors  the learnt prior over bar latents (optional)
              metrics.csv  loss.png  summary.json  .lock
"""

from __future__ import annotations

import csv
import os
import json
from functools import cached_property
from pathlib import Path

from . import checkpoint as ck
from .config import IGNORED_WEIGHTS, PriorConfig, RunConfig
from .errors import UserError

CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
BEST = "model.safetensors"
LAST = "last.safetensors"
STATE = "training_state.pt"
PRIOR = "prior.safetensors"
METRICS = "metrics.csv"
SUMMARY = "summary.json"
LOSS_PLOT = "loss.png"
# metrics.csv's columns (train writes a row every log_every steps and at each validation)
METRIC_FIELDS = ["step", "split", "loss", "ce", "bits_per_token", "kl", "beta", "recon", "lr",
                 "tokens_per_s", "elapsed_s"]
# what a run folder may hold (besides temporary files): a folder with anything else is not a
# run, and is never cleared
FILES = {CONFIG, TOKENIZER, BEST, LAST, STATE, PRIOR, ck.JOURNAL, METRICS, SUMMARY, LOSS_PLOT,
         ".lock"}


PRETRAINED = "pretrained"  # the name of the model that ships inside the package


def pretrained_dir() -> Path:
    """Where the shipped model lives: ``mtvae/pretrained/`` inside the installed package."""
    return Path(__file__).resolve().parent / PRETRAINED


def resolve(run_dir: str | os.PathLike) -> Path:
    """A RUN_DIR to read a model from: ``pretrained`` (when no folder of that name is here)
    is the shipped model; a version without one says so in one line."""
    path = Path(run_dir)
    if str(run_dir) == PRETRAINED and not path.exists():
        path = pretrained_dir()
        if not (path / CONFIG).is_file():
            raise UserError("this version of mtvae ships no pretrained model yet: pass a "
                            "RUN_DIR of your own (mtvae train DATA_DIR --out RUN_DIR)")
    return path


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._hashes: dict[str, str] = {}

    def __str__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------ what it holds
    @property
    def is_run(self) -> bool:
        return (self.path / CONFIG).is_file()

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def require_weights(self, weights: str = BEST) -> Path:
        """The weights file, or one line saying the run has none."""
        if not self.is_run or not self.has(weights):
            raise UserError(f"{self.path} has no trained weights ({CONFIG} and {weights}): "
                            "train it first with 'mtvae train'")
        return self.path / weights

    def is_fresh_leftover(self) -> bool:
        """A folder that a killed start left before its first checkpoint: only run files,
        no training state and no weights."""
        names = {p.name for p in self.path.iterdir()}
        names = {n for n in names if not (n.startswith(".") and n.endswith((".tmp", ck.PENDING)))}
        return names <= FILES and STATE not in names and BEST not in names

    # ------------------------------------------------------------------ config and tokenizer
    @cached_property
    def config(self) -> RunConfig:
        """config.json, every field checked (a removed option turned on: one line)."""
        cfg = RunConfig.load(self.path / CONFIG)
        if cfg.data.get("bpe"):
            raise UserError(f"{self.path} was trained on BPE tokens, which this mtvae no longer "
                            "reads: train it again on a DATA_DIR prepared by this version")
        return cfg

    def save_config(self, cfg: RunConfig) -> None:
        ck.write_text(self.path / CONFIG, cfg.to_json())
        self.__dict__["config"] = cfg

    @cached_property
    def tokenizer(self):
        """tokenizer.json, checked against the model's vocabulary size."""
        from .data.tokens import load_tokenizer

        tok = load_tokenizer(self.path)
        if self.is_run and len(tok.vocab) != self.config.model.vocab_size:
            raise UserError(f"{self.path}/{TOKENIZER} has {len(tok.vocab)} tokens but the model "
                            f"was built for {self.config.model.vocab_size}")
        return tok

    def copy_tokenizer(self, data_dir) -> None:
        tok = (Path(str(data_dir)) / TOKENIZER).read_bytes()
        ck.atomic_write(self.path / TOKENIZER, lambda tmp: Path(tmp).write_bytes(tok))

    # ------------------------------------------------------------------ weights
    def load_model(self, weights: str = BEST, device: str = "cpu"):
        """The trained ``MTVAE`` (eval mode) from ``weights``."""
        from .model import MTVAE

        path = self.require_weights(weights)
        model = MTVAE(self.config.model)
        ck.load_weights(model, path, ignore=IGNORED_WEIGHTS)
        return model.to(device).eval()

    def weights_hash(self, weights: str = BEST) -> str:
        """The weights file's hash, read once (the learnt prior is tied to it)."""
        if weights not in self._hashes:
            self._hashes[weights] = ck.file_hash(self.path / weights)
        return self._hashes[weights]

    def save_checkpoint(self, model, state: dict, step: int, best: bool) -> None:
        """One checkpoint set: best weights (when improved), last weights and the training
        state, committed together (``checkpoint.commit``)."""
        import torch
        from safetensors.torch import save_model

        meta = ck.weights_meta({"step": step})
        files = {}
        if best:
            files[BEST] = lambda tmp: save_model(model, tmp, metadata=meta)
        files[LAST] = lambda tmp: save_model(model, tmp, metadata=meta)
        files[STATE] = lambda tmp: torch.save(state, tmp)
        ck.commit(self.path, files, step)
        self._hashes.clear()

    def load_state(self) -> dict | None:
        """The training state to resume from (None: no checkpoint yet)."""
        return ck.load_state(self.path / STATE) if self.has(STATE) else None

    def recover(self) -> int | None:
        """Finish a checkpoint a killed process left (call while holding the lock)."""
        return ck.recover(self.path)

    def lock(self, what: str) -> ck.FolderLock:
        return ck.FolderLock(self.path, what)

    # ------------------------------------------------------------------ the learnt prior
    def load_prior(self, weights: str = BEST, required: bool = True):
        """prior.safetensors as a ``LatentPrior`` (eval mode), refused in one line when it is
        missing (unless not ``required``: then None), damaged, or fitted to other weights."""
        from .model.prior import LatentPrior

        path = self.path / PRIOR
        if not path.is_file():
            if not required:
                return None
            raise UserError(f"{self.path} has no learnt prior: fit one with 'mtvae prior "
                            f"{self.path} DATA_DIR' (or use --prior normal)")
        meta = ck.weights_metadata(path)
        pc = PriorConfig.from_json(meta.get("prior_config", ""), str(path))
        try:
            fitted_to = json.loads(meta.get("summary", "{}")).get("weights_hash")
        except ValueError:
            fitted_to = None
        if fitted_to != self.weights_hash(weights):
            raise UserError(f"{path} was fitted to other weights than {weights}: fit it again "
                            f"with 'mtvae prior {self.path} DATA_DIR' (or use --prior normal)")
        m = self.config.model
        if (pc.d_latent, pc.n_attr_classes, pc.n_genres) != (m.d_latent, m.n_attr_classes,
                                                             m.n_genres):
            raise UserError(f"{path} does not fit this run's {CONFIG}")
        prior = LatentPrior(pc)
        ck.load_weights(prior, path)
        return prior.eval()

    def save_prior(self, prior, pc: PriorConfig, summary: dict) -> None:
        summary = summary | {"weights_hash": self.weights_hash(BEST)}
        ck.save_weights(prior, self.path / PRIOR, {"prior_config": pc.to_json(),
                                                   "summary": json.dumps(summary)})

    # ------------------------------------------------------------------ reports
    def metrics(self) -> list[dict]:
        """metrics.csv's rows (step, split, losses, ...), as training wrote them."""
        with open(self.path / METRICS) as f:
            return list(csv.DictReader(f))

    def append_metrics(self, row: dict) -> None:
        path = self.path / METRICS
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def rewrite_metrics(self, history: list[dict]) -> None:
        """metrics.csv holding exactly ``history`` (a resumed run's, up to its checkpoint)."""
        text = [",".join(METRIC_FIELDS)]
        text += [",".join(str(row.get(k, "")) for k in METRIC_FIELDS) for row in history]
        ck.write_text(self.path / METRICS, "\n".join(text) + "\n")

    def write_json(self, name: str, obj: dict) -> None:
        ck.write_text(self.path / name, json.dumps(obj, indent=2))


def export(run_dir, out_dir, half: bool = True) -> Path:
    """A run's model for others to load (``MusicVAE.load(OUT_DIR)``, ``--from OUT_DIR``): its
    config, tokenizer, best weights (in float16 with ``half``: a quarter of a checkpoint set)
    and learnt prior, re-tied to the written weights; no training state. ``mtvae export``;
    the shipped model (``pretrained``) is one of these."""
    import torch

    from . import validate as V

    src = RunDir(resolve(run_dir))
    model = src.load_model()
    prior = src.load_prior(required=False)
    out = RunDir(V.out_dir(out_dir))
    if out.path.resolve() == src.path.resolve():
        raise UserError(f"export {run_dir}: write it to another folder")
    if out.is_run or out.has(BEST):
        raise UserError(f"{out.path} already holds a model: choose another folder")
    dtype = torch.float16 if half else torch.float32
    ck.write_text(out / CONFIG, src.config.to_json())
    out.copy_tokenizer(src.path)
    ck.save_weights(model.to(dtype), out / BEST, {"exported_from": src.weights_hash(BEST),
                                                  "dtype": str(dtype).removeprefix("torch.")})
    if prior is not None:
        meta = ck.weights_metadata(src / PRIOR)
        pc = PriorConfig.from_json(meta["prior_config"], str(src / PRIOR))
        summary = json.loads(meta.get("summary", "{}"))
        out.save_prior(prior.to(dtype), pc, summary)
    return out.path