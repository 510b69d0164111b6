"""Training: ``train(DATA_DIR, RUN_DIR, ...)`` and ``mtvae train``.

AdamW, linear warm-up then cosine decay, gradient clipping, β warm-up (linear or cyclic)
with free bits, augmentation, truncated back-propagation through memory (inside the model),
validation every N steps with early stopping, the best model kept, atomic checkpoints,
``--resume`` that continues exactly (step, optimizer, scheduler, RNG, data order), one
progress bar, ``metrics.csv`` and ``loss.png``. Under ``torchrun`` it runs
DistributedDataParallel (gloo on CPU, NCCL on GPU) and only rank 0 writes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist

from . import checkpoint as ck
from . import validate as V
from .config import RunConfig, TrainConfig, model_config
from .data.dataset import load_meta, load_split, load_tokenizer
from .data.tokens import FILL, Vocab
from .data.windows import Augmenter, BarContent, TrainWindows, eval_batches, eval_windows
from .errors import UserError
from .model import MTVAE

METRICS = "metrics.csv"
FIELDS = ["step", "split", "loss", "ce", "bits_per_token", "kl", "beta", "recon", "aux", "lr",
          "tokens_per_s", "elapsed_s"]


def resolve_device(name: str) -> torch.device:
    return torch.device(V.device(name))


def beta_at(step: int, t: TrainConfig) -> float:
    if t.beta_cycle_steps > 0:  # cyclic: ramp over the first half of each cycle, then hold
        phase = (step % t.beta_cycle_steps) / (t.beta_cycle_steps / 2)
        return t.beta_max * min(1.0, phase)
    return t.beta_max * min(1.0, step / max(t.beta_warmup_steps, 1))


def lr_lambda(t: TrainConfig):
    warmup = max(1, min(t.warmup_steps, t.max_steps // 10))  # short runs warm up briefly

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        prog = min(1.0, (step - warmup) / max(t.max_steps - warmup, 1))
        return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog))
    return f


def make_optimizer(model: MTVAE, t: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "embed" not in name and "_emb" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=t.lr, betas=(0.9, 0.98))


class Trainer:
    def __init__(self, data_dir, run_dir, cfg: RunConfig, device: torch.device, quiet: bool):
        self.data_dir, self.run_dir, self.cfg, self.device, self.quiet = (
            Path(data_dir), Path(run_dir), cfg, device, quiet)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.is_main = self.rank == 0
        t, m = cfg.train, cfg.model
        self.length = t.segments * m.seg_len
        torch.manual_seed(t.seed)
        self.model = MTVAE(m).to(device)
        self.ddp = None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.ddp = DDP(self.model, device_ids=[device.index] if device.type == "cuda" else None,
                           find_unused_parameters=True)
        self.opt = make_optimizer(self.model, t)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(t))
        self.train_store = load_split(data_dir, "train")
        if len(self.train_store) == 0:
            raise UserError(f"the train split of {data_dir} is empty: prepare more songs")
        val_split = "valid"
        self.val_store = load_split(data_dir, val_split)
        if len(self.val_store) == 0:
            self.val_store = self.train_store
            self.log("warning: the valid split is empty; validating on train (no early stopping signal)")
        augment = content = None
        tokenizer = load_tokenizer(data_dir)
        if not cfg.data.get("bpe") and (t.transpose or t.tempo_jitter):
            augment = Augmenter(tokenizer.vocab, t.transpose, t.tempo_jitter)
        if not cfg.data.get("bpe") and t.aux_weight > 0:
            if not m.aux_head:
                raise UserError("--aux-weight needs a model with aux_head")
            content = BarContent(Vocab(tokenizer.vocab))
        # word dropout replaces decoder inputs by MASK (or PAD in a vocabulary without it)
        self.mask_id = int(tokenizer.vocab.get("MASK_None", m.pad_id))
        fill_id = int(tokenizer.vocab.get(FILL, -1)) if not cfg.data.get("bpe") else -1
        if t.infill > 0 and fill_id < 0:
            raise UserError(f"--infill {t.infill}: {data_dir} has no {FILL} token (prepared "
                            "by an older mtvae or with --bpe-vocab): run 'mtvae prepare' again, "
                            "or pass --infill 0")
        self.windows = TrainWindows(self.train_store, self.length, t.batch_size, m.max_bar_len,
                                    m.pad_id, t.seed, self.rank, self.world, augment, content,
                                    t.infill, fill_id)
        self.val_windows = eval_windows(self.val_store, self.length, t.val_windows)
        self.step, self.best, self.bad_rounds, self.history = 0, float("inf"), 0, []
        self.amp = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                    else nullcontext())  # bf16 is ~20x slower than fp32 on these CPUs

    # ------------------------------------------------------------------ utilities
    def log(self, msg: str) -> None:
        if self.is_main:
            print(msg, file=sys.stderr if msg.startswith("warning") else sys.stdout, flush=True)

    def _all_sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        s = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
             "scheduler": self.sched.state_dict(), "step": self.step, "best": self.best,
             "bad_rounds": self.bad_rounds, "history": self.history,
             "torch_rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            s["cuda_rng"] = torch.cuda.get_rng_state_all()
        return s

    def load(self, s: dict) -> None:
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["optimizer"])
        self.sched.load_state_dict(s["scheduler"])
        self.step, self.best, self.bad_rounds = s["step"], s["best"], s["bad_rounds"]
        self.history = s["history"]
        torch.set_rng_state(s["torch_rng"])
        if "cuda_rng" in s and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["cuda_rng"])

    # ------------------------------------------------------------------ steps
    def train_step(self) -> dict:
        t = self.cfg.train
        self.model.train()
        batch = self.windows.batch(self.step).to(self.device)
        beta = beta_at(self.step, t)
        if t.word_dropout > 0:  # seeded by the step, so a resumed run drops the same tokens
            gen = torch.Generator().manual_seed(t.seed * 1_000_003 + self.step * 31 + self.rank)
            drop = torch.rand(batch.inputs.shape, generator=gen).to(self.device) < t.word_dropout
            batch.inputs = torch.where(drop & (batch.inputs != self.cfg.model.pad_id),
                                       self.mask_id, batch.inputs)
        alone = None
        if t.context_dropout > 0:  # seeded by the step, like word dropout
            gen = torch.Generator().manual_seed(t.seed * 1_000_033 + self.step * 37 + self.rank)
            alone = (torch.rand(batch.bar_mask.shape, generator=gen) < t.context_dropout
                     ).to(self.device)
        with self.amp:
            out = (self.ddp or self.model)(batch, beta=beta, free_bits=t.free_bits,
                                           recon_weight=t.recon_weight, aux_weight=t.aux_weight,
                                           bag_weight=t.bag_weight,
                                           alone=alone)
        self.opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1
        return {"loss": out["loss"].item(), "ce": out["ce"].item(),
                "kl": out["kl"].item() if "kl" in out else 0.0, "recon": out["recon"].item(),
                "aux": out["aux"].item() if "aux" in out else 0.0,
                "beta": beta, "tokens": int(out["n_tokens"]) * self.world}

    @torch.no_grad()
    def validate(self) -> dict:
        """Validation ELBO per token (ce with z ~ q(z|x) + KL), fixed noise, rank-sharded."""
        self.model.eval()
        m, t = self.cfg.model, self.cfg.train
        mine = self.val_windows[self.rank::self.world]
        sums = [0.0, 0.0, 0.0, 0.0]  # ce*n, kl_tokens*n, recon, n
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)
            for batch in eval_batches(self.val_store, mine, self.length, t.batch_size,
                                      m.max_bar_len, m.pad_id):
                with self.amp:
                    out = self.model(batch.to(self.device), sample=True)
                n = float(out["n_tokens"])
                sums[0] += out["ce"].item() * n
                sums[1] += out["kl_per_token"].item() * n if "kl_per_token" in out else 0.0
                sums[2] += out["recon"].item()
                sums[3] += n
        ce_n, kl_n, _, n = self._all_sum(sums)
        n = max(n, 1.0)
        ce, kl = ce_n / n, kl_n / n
        return {"loss": ce + kl, "ce": ce, "kl_per_token": kl}

    # ------------------------------------------------------------------ files
    def write_metrics(self, row: dict) -> None:
        self.history.append(row)
        if not self.is_main:
            return
        path = self.run_dir / METRICS
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def rewrite_metrics(self) -> None:
        """On resume: the CSV holds exactly the history of the checkpoint."""
        if not self.is_main:
            return
        text = [",".join(FIELDS)]
        for row in self.history:
            text.append(",".join(str(row.get(k, "")) for k in FIELDS))
        ck.write_text(self.run_dir / METRICS, "\n".join(text) + "\n")

    def save(self, best: bool) -> None:
        """One checkpoint set: best weights (when improved), last weights and the training
        state, committed together (``checkpoint.commit``)."""
        if not self.is_main:
            return
        from safetensors.torch import save_model

        meta = ck.weights_meta({"step": self.step})
        files = {}
        if best:
            files[ck.BEST] = lambda tmp: save_model(self.model, tmp, metadata=meta)
        files[ck.LAST] = lambda tmp: save_model(self.model, tmp, metadata=meta)
        state = self.state()
        files[ck.STATE] = lambda tmp: torch.save(state, tmp)
        ck.commit(self.run_dir, files, self.step)
        plot_losses(self.history, self.run_dir / "loss.png")

    # ------------------------------------------------------------------ loop
    def fit(self, max_minutes: float | None) -> dict:
        from tqdm.auto import tqdm

        t = self.cfg.train
        start = time.time()
        bar = tqdm(total=t.max_steps, initial=self.step, disable=self.quiet or not self.is_main,
                   unit="step", dynamic_ncols=True)
        tokens, tick, stopped = 0, time.time(), "max_steps"
        last = {}
        while self.step < t.max_steps:
            last = self.train_step()
            tokens += last["tokens"]
            bar.update()
            if self.step % t.log_every == 0 or self.step == 1:
                rate = tokens / max(time.time() - tick, 1e-9)
                tokens, tick = 0, time.time()
                row = {"step": self.step, "split": "train", "loss": round(last["loss"], 5),
                       "ce": round(last["ce"], 5), "bits_per_token": round(last["ce"] / math.log(2), 5),
                       "kl": round(last["kl"], 4), "beta": round(last["beta"], 4),
                       "recon": round(last["recon"], 6), "aux": round(last["aux"], 6),
                       "lr": self.sched.get_last_lr()[0],
                       "tokens_per_s": round(rate), "elapsed_s": round(time.time() - start, 1)}
                self.write_metrics(row)
                bar.set_postfix(loss=f"{last['loss']:.3f}", kl=f"{last['kl']:.2f}",
                                tok_s=f"{rate:.0f}")
                if self.quiet:
                    self.log(f"step {self.step} loss {last['loss']:.4f} ce {last['ce']:.4f} "
                             f"kl {last['kl']:.3f}" + (f" aux {last['aux']:.3f}" if last["aux"] else "")
                             + f" tok/s {rate:.0f}")
            out_of_time = max_minutes is not None and time.time() - start > 60 * max_minutes
            if self.step % t.val_every == 0 or out_of_time or self.step == t.max_steps:
                if self.evaluate_and_save(start):
                    stopped = "early_stopping"
                    break
            if out_of_time:
                stopped = "max_minutes"
                break
        bar.close()
        return {"steps": self.step, "stopped": stopped, "best_val_loss": self.best,
                "best_val_bits_per_token": self.best / math.log(2)}

    def evaluate_and_save(self, start: float) -> bool:
        """Validate, keep the best, write checkpoints. True when patience is exhausted."""
        v = self.validate()
        improved = v["loss"] < self.best
        if improved:
            self.best, self.bad_rounds = v["loss"], 0
        else:
            self.bad_rounds += 1
        self.write_metrics({"step": self.step, "split": "valid", "loss": round(v["loss"], 5),
                            "ce": round(v["ce"], 5), "bits_per_token": round(v["loss"] / math.log(2), 5),
                            "kl": round(v["kl_per_token"], 5), "elapsed_s": round(time.time() - start, 1)})
        self.save(best=improved)
        self.log(f"step {self.step}: validation {v['loss']:.4f} nats/token "
                 f"({v['loss'] / math.log(2):.3f} bits){' *best*' if improved else ''}")
        return self.bad_rounds >= self.cfg.train.patience


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
    ck.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


# what a run folder may hold (besides temporary files): a folder with anything else is not
# a run, and is never cleared
RUN_FILES = {ck.CONFIG, ck.BEST, ck.LAST, ck.STATE, ck.JOURNAL, METRICS, "loss.png",
             "summary.json", "tokenizer.json", ".lock"}
RESUMABLE = ("max_steps", "patience", "val_every", "log_every", "prior_steps")  # may change on --resume


def _is_fresh_leftover(run_dir: Path) -> bool:
    """A folder that a killed start left before its first checkpoint: only run files, no state."""
    names = {p.name for p in run_dir.iterdir()}
    names = {n for n in names if not (n.startswith(".") and n.endswith((".tmp", ck.PENDING)))}
    return names <= RUN_FILES and ck.STATE not in names and ck.BEST not in names


def _check_resume(cfg: RunConfig, meta: dict, data_dir: Path, run_dir: Path, preset,
                  model_overrides: dict, train_overrides: dict) -> None:
    """Everything --resume needs, checked before anything is written."""
    for k, v in train_overrides.items():
        if k not in RESUMABLE and getattr(cfg.train, k) != v:
            raise UserError(f"--{k.replace('_', '-')} {v}: a resumed run keeps its saved "
                            f"{k} ({getattr(cfg.train, k)}); only --max-steps, --max-minutes, "
                            "--patience and --val-every may change")
    if preset is not None and preset != cfg.train.preset:
        raise UserError(f"--preset {preset}: this run was trained as {cfg.train.preset}")
    for k, v in (model_overrides or {}).items():
        if getattr(cfg.model, k) != v:
            raise UserError(f"--{k.replace('use_', 'no-').replace('_', '-')}: a resumed run keeps "
                            "its saved model settings")
    if meta["vocab_size"] != cfg.model.vocab_size or bool(meta["bpe"]) != bool(cfg.data.get("bpe")):
        raise UserError(f"{data_dir} does not match this run (vocabulary {meta['vocab_size']}"
                        f"{' BPE' if meta['bpe'] else ''} vs {cfg.model.vocab_size}"
                        f"{' BPE' if cfg.data.get('bpe') else ''})")
    if meta["genres"] != cfg.data.get("genres"):
        raise UserError(f"{data_dir} has other genres than this run was trained on")
    if ck.load_tokenizer(data_dir).vocab != ck.load_tokenizer(run_dir).vocab:
        raise UserError(f"the tokenizer of {data_dir} differs from this run's tokenizer.json")


def train(data_dir, run_dir, preset: str | None = None, resume: bool = False, device: str = "auto",
          quiet: bool = False, max_minutes: float | None = None, model_overrides: dict | None = None,
          **train_overrides) -> dict:
    """Train (or resume) a model; returns a summary dict (also in RUN_DIR/summary.json).

    With ``resume``, ``max_steps``, ``max_minutes``, ``patience``, ``val_every`` may change;
    any other setting that differs from the saved run is an error (nothing is ignored)."""
    meta = load_meta(data_dir)
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    dev = resolve_device(device)
    V.number("max_minutes", max_minutes, 0.0, 10**7, lo_open=True, allow_none=True)
    unknown = set(train_overrides) - {f for f in TrainConfig.__dataclass_fields__}
    if unknown:
        raise TypeError(f"train() got unknown settings: {', '.join(sorted(unknown))}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} exists and is not a folder")
    if resume and not (run_dir / ck.CONFIG).is_file():
        raise UserError(f"--resume: {run_dir} is not a run (no {ck.CONFIG})")
    TrainConfig(preset=preset or "small", **train_overrides)  # every value checked up front
    created = not run_dir.exists()
    if rank == 0:
        V.out_dir(run_dir)
    lock = ck.FolderLock(run_dir, "train") if rank == 0 else None
    if lock:
        lock.__enter__()
    try:
        return _train_locked(meta, data_dir, run_dir, preset, resume, dev, quiet, max_minutes,
                             model_overrides, train_overrides, world, rank)
    except BaseException:
        if created and rank == 0 and {p.name for p in run_dir.iterdir()} <= {".lock"}:
            shutil.rmtree(run_dir, ignore_errors=True)  # refused before writing: leave nothing
        raise
    finally:
        if lock:
            lock.__exit__()


def _train_locked(meta, data_dir: Path, run_dir: Path, preset, resume: bool, dev, quiet: bool,
                  max_minutes, model_overrides, train_overrides, world: int, rank: int) -> dict:
    step = ck.recover(run_dir) if rank == 0 else None
    has_state = (run_dir / ck.STATE).is_file()
    fresh = False
    if resume:
        cfg = ck.load_config(run_dir) if (run_dir / ck.CONFIG).is_file() else None
        if cfg is None:
            raise UserError(f"--resume: {run_dir} is not a run (no {ck.CONFIG})")
        _check_resume(cfg, meta, data_dir, run_dir, preset, model_overrides, train_overrides)
        state = ck.load_state(run_dir / ck.STATE) if has_state else None
        for k in RESUMABLE:
            if k in train_overrides:
                setattr(cfg.train, k, train_overrides[k])
        cfg = RunConfig(model=cfg.model, train=TrainConfig(**vars(cfg.train)), data=cfg.data)
        if state is None:
            print(f"note: {run_dir} has no checkpoint yet (killed before its first one): "
                  "starting it from step 0", file=sys.stderr)
    else:
        # rank 0 decides (the other ranks see the files it is writing)
        if rank == 0 and any(run_dir.iterdir()) and not _is_fresh_leftover(run_dir):
            raise UserError(f"{run_dir} already exists: pass --resume to continue it, "
                            "or choose another --out")
        fresh = True
        state = None
        overrides = dict(model_overrides or {})
        preset = preset or "small"
        mcfg = model_config(preset, vocab_size=meta["vocab_size"], n_genres=len(meta["genres"]),
                            pad_id=meta["pad_id"], n_attr_classes=meta["attribute_classes"],
                            **overrides)
        tcfg = TrainConfig(preset=preset, **train_overrides)
        if "infill" not in train_overrides and tcfg.infill > 0 and (
                meta["bpe"] or FILL not in load_tokenizer(data_dir).vocab):
            tcfg.infill = 0.0
            if rank == 0:
                print(f"note: {data_dir} has no {FILL} token (prepared by an older mtvae or "
                      "with --bpe-vocab): training without infilling; run 'mtvae prepare' "
                      "again for a model that can infill", file=sys.stderr)
        attrs = json.loads((data_dir / "attributes.json").read_text())
        cfg = RunConfig(model=mcfg, train=tcfg, data={
            "data_dir": str(data_dir.resolve()), "genres": meta["genres"],
            "bpe": meta["bpe"], "attribute_edges": attrs["edges"], "vocab_size": meta["vocab_size"],
            # how songs were re-barred (generation reads its inputs the same way) and the
            # train split's meters (a sample keeps the most common one unless asked)
            "meter": meta.get("meter", "keep"), "meters": meta.get("meters", {}),
        })
    del step
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
    trainer = Trainer(data_dir, run_dir, cfg, dev, quiet)  # reads the data: may refuse it
    if state is not None:
        try:
            trainer.load(state)
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{run_dir / ck.STATE} does not fit this run's {ck.CONFIG} "
                            f"({type(e).__name__}): delete the run folder to start over") from None
    if rank == 0:  # every check passed: now write
        if fresh:
            for name in (METRICS, "loss.png", "summary.json", ck.JOURNAL):
                (run_dir / name).unlink(missing_ok=True)
            tok = (data_dir / "tokenizer.json").read_bytes()
            ck.atomic_write(run_dir / "tokenizer.json", lambda tmp: Path(tmp).write_bytes(tok))
        ck.save_config(cfg, run_dir)
    if state is not None:
        trainer.rewrite_metrics()
    elif resume and rank == 0:
        (run_dir / METRICS).unlink(missing_ok=True)
    trainer.log(f"mtvae {cfg.train.preset}: {trainer.model.num_parameters() / 1e6:.2f}M parameters, "
                f"{len(trainer.train_store)} train songs, device {dev}, world {world}, "
                f"step {trainer.step}/{cfg.train.max_steps}")
    summary = trainer.fit(max_minutes)
    summary["parameters"] = trainer.model.num_parameters()
    if world > 1:  # proof that DDP kept every rank's weights identical
        flat = torch.cat([p.detach().double().flatten().cpu() for p in trainer.model.parameters()])
        mine = torch.tensor([flat.sum().item(), flat.abs().sum().item(), (flat * flat).sum().item()],
                            dtype=torch.float64)
        gathered = [torch.zeros(3, dtype=torch.float64) for _ in range(world)]
        dist.all_gather(gathered, mine)
        summary["rank_weight_checksums"] = [g.tolist() for g in gathered]
        dist.destroy_process_group()
    if rank == 0:
        summary["config"] = asdict(cfg.train)
        ck.write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
        if cfg.train.prior_steps > 0 and cfg.model.use_vae and (run_dir / ck.BEST).is_file():
            pc = prior_config(cfg, steps=cfg.train.prior_steps, seed=cfg.train.seed)
            trainer.log(f"fitting the learnt prior ({pc.steps} steps; 'mtvae prior' redoes it)")
            p = _fit_prior(run_dir, data_dir, cfg, pc, dev, quiet)
            summary["prior"] = {k: p[k] for k in ("valid_nll_per_bar", "valid_nll_standard_normal")}
            ck.write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


# ----------------------------------------------------------------------------- the learnt prior


@torch.no_grad()
def encode_store(model: MTVAE, store, songs, device, progress=None, max_bars: int | None = None,
                 seed: int = 0) -> list[dict]:
    """Posterior (mu, logvar) of the bars of ``songs`` (indices into ``store``), with the
    bars' classes and the song's genre: every bar, or a run of ``max_bars`` consecutive bars
    starting at a seeded random bar (encoding is the slow part; many songs beat long ones)."""
    import numpy as np

    from .data.windows import pack_bars

    L, per_row, out = model.cfg.max_bar_len, 16, []
    rng = np.random.default_rng(seed)
    for s in songs:
        ids, starts = np.asarray(store.ids(s)), np.asarray(store.bars(s))
        if len(starts) < 2:
            continue
        ends = np.r_[starts[1:], len(ids)]
        first = 0
        if max_bars is not None and len(starts) > max_bars:
            first = int(rng.integers(0, len(starts) - max_bars + 1))
        last = len(starts) if max_bars is None else min(first + max_bars, len(starts))
        bar_ids = [ids[a:b][:L] for a, b in zip(starts[first:last], ends[first:last])]
        rows = [bar_ids[i:i + per_row] for i in range(0, len(bar_ids), per_row)]
        tokens, bar = pack_bars(rows, model.cfg.pad_id)
        mu, logvar = model.encode(tokens.to(device), bar.to(device), per_row)
        r, p = store.attributes(s)
        n = len(bar_ids)
        out.append({"mu": mu.flatten(0, 1)[:n].cpu(), "logvar": logvar.flatten(0, 1)[:n].cpu(),
                    "rhythm": torch.from_numpy(np.asarray(r[first:last], dtype=np.int64)),
                    "polyphony": torch.from_numpy(np.asarray(p[first:last], dtype=np.int64)),
                    "genre": int(store.genre[s])})
        if progress:
            progress(1)
    return out


def _prior_batch(songs: list[dict], n: int, chunk: int, gen: torch.Generator, sample=True):
    """``n`` runs of at most ``chunk`` consecutive bars; z drawn from each bar's posterior
    (``sample``) or its mean. Returns z [n, T, D], rhythm, polyphony [n, T], genre [n], mask."""
    picks = torch.randint(len(songs), (n,), generator=gen).tolist()
    T = min(chunk, max(len(songs[i]["mu"]) for i in picks))
    D = songs[0]["mu"].shape[1]
    z, r, p = torch.zeros(n, T, D), torch.zeros(n, T, dtype=torch.long), torch.zeros(n, T, dtype=torch.long)
    g, mask = torch.zeros(n, dtype=torch.long), torch.zeros(n, T)
    for j, i in enumerate(picks):
        s = songs[i]
        N = len(s["mu"])
        a = int(torch.randint(max(N - T, 0) + 1, (1,), generator=gen)) if N > T else 0
        k = min(T, N - a)
        mu, lv = s["mu"][a:a + k], s["logvar"][a:a + k]
        z[j, :k] = mu + (0.5 * lv).exp() * torch.randn(mu.shape, generator=gen) if sample else mu
        r[j, :k], p[j, :k], g[j], mask[j, :k] = s["rhythm"][a:a + k], s["polyphony"][a:a + k], s["genre"], 1
    return z, r, p, g, mask


def new_prior(pc, songs: list[dict]):
    """A ``LatentPrior`` (seeded by ``pc.seed``) whose standardisation is the training
    latents' mean and spread (their means' variance plus the posteriors' mean variance)."""
    from .model.prior import LatentPrior

    torch.manual_seed(pc.seed)
    prior = LatentPrior(pc)
    allz = torch.cat([s["mu"] for s in songs])
    spread = (allz.var(0) + torch.cat([s["logvar"] for s in songs]).exp().mean(0)).sqrt()
    prior.z_mean.copy_(allz.mean(0))
    prior.z_std.copy_(spread.clamp(min=1e-3))
    return prior


def prior_step(prior, opt, songs: list[dict], pc, gen: torch.Generator) -> torch.Tensor:
    """One training step of the prior on a batch of posterior samples; returns its loss
    (mean -log p(z) per bar)."""
    prior.train()
    z, r, p, g, mask = _prior_batch(songs, pc.batch_size, pc.chunk_bars, gen)
    loss = prior.nll(z, r, p, g, mask).sum() / mask.sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
    opt.step()
    return loss


def _prior_nll(prior, songs: list[dict], seed: int) -> tuple[float, float]:
    """Mean -log p(z) per bar of posterior samples of every bar of ``songs``: under the
    learnt prior and under N(0, I) (nats)."""
    gen = torch.Generator().manual_seed(seed)
    total = normal = bars = 0.0
    prior.eval()
    with torch.no_grad():
        for s in songs:
            z = s["mu"] + (0.5 * s["logvar"]).exp() * torch.randn(s["mu"].shape, generator=gen)
            nll = prior.nll(z[None], s["rhythm"][None], s["polyphony"][None],
                            torch.tensor([s["genre"]]))
            total += float(nll.sum())
            normal += float(0.5 * (z.pow(2) + math.log(2 * math.pi)).sum())
            bars += len(z)
    return total / max(bars, 1), normal / max(bars, 1)


def prior_config(cfg: RunConfig, **overrides):
    """The learnt prior's config for a run: its latent size, classes and genres, and a GRU of
    4 units per latent dimension (at least 64: 256 for `small`, 64 for `tiny`)."""
    from .config import PriorConfig

    return PriorConfig(**{"d_latent": cfg.model.d_latent, "n_attr_classes": cfg.model.n_attr_classes,
                          "n_genres": cfg.model.n_genres,
                          "d_hidden": max(64, 4 * cfg.model.d_latent)} | overrides)


def train_prior(run_dir, data_dir, steps: int | None = None, max_songs: int | None = None,
                device: str = "cpu", quiet: bool = False, seed: int = 0) -> dict:
    """Fit ``LatentPrior`` to the latents the run's encoder writes for the training songs of
    DATA_DIR (the DATA_DIR it was trained on) and save it as RUN_DIR/prior.safetensors, with
    its config, the weights' hash and the validation figures in the file's metadata."""
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    load_meta(data_dir)
    if not (run_dir / ck.CONFIG).is_file() or not (run_dir / ck.BEST).is_file():
        raise UserError(f"{run_dir} has no trained weights: train it first with 'mtvae train'")
    cfg = ck.load_config(run_dir)
    if not cfg.model.use_vae:
        raise UserError(f"{run_dir} was trained with --no-vae: it has no latents to fit a prior to")
    if len(load_tokenizer(data_dir).vocab) != cfg.model.vocab_size:
        raise UserError(f"{data_dir} has another vocabulary than {run_dir}: use the DATA_DIR "
                        "the run was trained on")
    pc = prior_config(cfg, **{k: v for k, v in
                              (("steps", steps), ("max_songs", max_songs), ("seed", seed)) if v is not None})
    dev = resolve_device(device)
    with ck.FolderLock(run_dir, "prior"):
        return _fit_prior(run_dir, data_dir, cfg, pc, dev, quiet)


def _fit_prior(run_dir: Path, data_dir: Path, cfg: RunConfig, pc, dev, quiet: bool) -> dict:
    """``train_prior`` once the arguments are checked and the run is locked."""
    import numpy as np
    from tqdm.auto import tqdm

    model = MTVAE(cfg.model)
    ck.load_weights(model, run_dir / ck.BEST)
    model.to(dev).eval()
    train_store, valid_store = load_split(data_dir, "train"), load_split(data_dir, "valid")
    order = np.random.default_rng(pc.seed).permutation(len(train_store))[:pc.max_songs]
    n_valid = min(len(valid_store), 50)
    bar = tqdm(total=len(order) + n_valid, desc="encode", unit="song", disable=quiet, leave=False)
    songs = encode_store(model, train_store, order.tolist(), dev, bar.update, pc.bars_per_song,
                         pc.seed)
    valid = encode_store(model, valid_store, range(n_valid), dev, bar.update, pc.bars_per_song,
                         pc.seed + 1)
    bar.close()
    if not songs:
        raise UserError(f"{data_dir}: no training song has two bars or more")
    del model
    prior = new_prior(pc, songs)
    opt = torch.optim.AdamW(prior.parameters(), lr=pc.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / pc.steps))))
    gen = torch.Generator().manual_seed(pc.seed)
    best, best_state, history, stale = float("inf"), None, [], 0
    every = min(50, max(pc.steps // 6, 1))  # validate often: it overfits within minutes
    bar = tqdm(total=pc.steps, desc="prior", unit="step", disable=quiet, leave=False)
    for step in range(1, pc.steps + 1):
        loss = prior_step(prior, opt, songs, pc, gen)
        sched.step()
        bar.update(1)
        if step % every == 0 or step == pc.steps:
            v, normal = _prior_nll(prior, valid or songs[:50], pc.seed)
            history.append({"step": step, "train_nll": round(loss.item(), 3), "valid_nll": round(v, 3)})
            bar.set_postfix(valid=f"{v:.1f}")
            if v < best:
                best, stale = v, 0
                best_state = {k: t.detach().clone() for k, t in prior.state_dict().items()}
            else:
                stale += 1
                if stale >= 10:  # ten validations without a better one: it only overfits now
                    break
    bar.close()
    prior.load_state_dict(best_state)
    summary = {"valid_nll_per_bar": round(best, 3),
               "valid_nll_standard_normal": round(normal, 3),
               "train_songs": len(songs), "train_bars": sum(len(s["mu"]) for s in songs),
               "valid_songs": len(valid), "history": history,
               "weights_hash": ck.file_hash(run_dir / ck.BEST)}
    ck.save_weights(prior, run_dir / ck.PRIOR, {"prior_config": pc.to_json(),
                                                "summary": json.dumps(summary)})
    return summary
