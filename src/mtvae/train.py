"""Training: ``train(DATA_DIR, RUN_DIR, ...)`` and ``mtvae train``.

AdamW, linear warm-up then cosine decay, gradient clipping, a linear β warm-up with free
bits, augmentation, truncated back-propagation through memory (inside the model),
validation every N steps with early stopping, the best model kept, atomic checkpoints,
Ctrl-C or SIGTERM (one process) finishing the step and checkpointing it before it stops,
``--resume`` that continues exactly (step, optimizer, scheduler, RNG, data order), one
progress bar, ``metrics.csv`` and ``loss.png``. Under ``torchrun`` it runs
DistributedDataParallel (gloo on CPU, NCCL on GPU) and only rank 0 writes. The run folder's
files are ``RunDir``'s (``run.py``); the learnt prior fitted at the end is
``learnt_prior.py``'s.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.distributed as dist

from . import checkpoint as ck
from . import run as R
from . import validate as V
from .config import IGNORED_WEIGHTS, RunConfig, TrainConfig, model_config
from .data.dataset import DataDir
from .data.tokens import FILL
from .data.windows import Augmenter, TrainWindows, eval_batches, eval_windows
from .errors import UserError
from .model import MTVAE
from .run import RunDir



def beta_at(step: int, t: TrainConfig) -> float:
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


def raise_for(signum: int):
    """What the signal does to a Python program by default: KeyboardInterrupt for SIGINT,
    exit 128 + N otherwise."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM while training: the step in progress ends, is checkpointed
    and training stops (``signum`` says which came); a second one stops at once, the last
    checkpoint kept. A signal the caller ignores (e.g. SIGINT of a background job) stays
    ignored, and so does one whose handler Python cannot restore. Only in the main thread of a
    single process: under torchrun every rank would have to stop at the same step, so there a
    signal stops at once as before (the last checkpoint kept)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, active: bool = True):
        self.active, self.signum, self._old = active, None, {}

    def __enter__(self) -> StopRequest:
        if self.active and threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                old = signal.getsignal(s)
                if old is not None and old is not signal.SIG_IGN:
                    self._old[s] = old
                    signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise_for(signum)
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


class Trainer:
    def __init__(self, data: DataDir, run: RunDir, cfg: RunConfig, device: torch.device,
                 quiet: bool):
        self.data, self.run, self.cfg, self.device, self.quiet = data, run, cfg, device, quiet
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
        self.train_store = data.split("train")
        if len(self.train_store) == 0:
            raise UserError(f"the train split of {data} is empty: prepare more songs")
        self.val_store = data.split("valid")
        if len(self.val_store) == 0:
            self.val_store = self.train_store
            self.log("warning: the valid split is empty; validating on train (no early stopping signal)")
        vocab = data.tokenizer.vocab
        augment = (Augmenter(vocab, t.transpose, t.tempo_jitter)
                   if t.transpose or t.tempo_jitter else None)
        fill_id = int(vocab.get(FILL, -1))
        if t.infill > 0 and fill_id < 0:
            raise UserError(f"--infill {t.infill}: {data} has no {FILL} token (prepared by an "
                            "older mtvae): run 'mtvae prepare' again, or pass --infill 0")
        self.windows = TrainWindows(self.train_store, self.length, t.batch_size, m.max_bar_len,
                                    m.pad_id, t.seed, self.rank, self.world, augment,
                                    t.infill, fill_id, t.genre_dropout)
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
        with self.amp:
            out = (self.ddp or self.model)(batch, beta=beta, free_bits=t.free_bits,
                                           recon_weight=t.recon_weight)
        self.opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1
        return {"loss": out["loss"].item(), "ce": out["ce"].item(),
                "kl": out["kl"].item() if "kl" in out else 0.0, "recon": out["recon"].item(),
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
        if self.is_main:
            self.run.append_metrics(row)

    def rewrite_metrics(self) -> None:
        """On resume: the CSV holds exactly the history of the checkpoint."""
        if self.is_main:
            self.run.rewrite_metrics(self.history)

    def save(self, best: bool) -> None:
        if not self.is_main:
            return
        from .render import plot_losses

        self.run.save_checkpoint(self.model, self.state(), self.step, best)
        plot_losses(self.history, self.run / R.LOSS_PLOT)

    # ------------------------------------------------------------------ loop
    def fit(self, max_minutes: float | None) -> dict:
        from tqdm.auto import tqdm

        t = self.cfg.train
        start = time.time()
        bar = tqdm(total=t.max_steps, initial=self.step, disable=self.quiet or not self.is_main,
                   unit="step", dynamic_ncols=True)
        with StopRequest(self.world == 1) as stop:
            stopped = self._loop(t, max_minutes, bar, start, stop)
        if max_minutes is not None and bar.total is not None and bar.n > bar.total:
            bar.total = bar.n  # a late estimate
        bar.close()
        best = self.best if math.isfinite(self.best) else None  # None: never validated
        out = {"steps": self.step, "stopped": stopped, "best_val_loss": best,
               "best_val_bits_per_token": None if best is None else best / math.log(2)}
        if stop.signum is not None:
            out["signal"] = int(stop.signum)
        return out

    def _loop(self, t, max_minutes: float | None, bar, start: float, stop: StopRequest) -> str:
        tokens, tick, first = 0, time.time(), self.step
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
                       "recon": round(last["recon"], 6),
                       "lr": self.sched.get_last_lr()[0],
                       "tokens_per_s": round(rate), "elapsed_s": round(time.time() - start, 1)}
                self.write_metrics(row)
                bar.set_postfix(loss=f"{last['loss']:.3f}", kl=f"{last['kl']:.2f}",
                                tok_s=f"{rate:.0f}")
                if max_minutes is not None and self.step > first:  # the steps time allows
                    per_step = (time.time() - start) / (self.step - first)
                    left = max(60 * max_minutes - (time.time() - start), 0.0)
                    bar.total = min(t.max_steps, self.step + int(left / per_step) + 1)
                    bar.refresh()
                if self.quiet:
                    self.log(f"step {self.step} loss {last['loss']:.4f} ce {last['ce']:.4f} "
                             f"kl {last['kl']:.3f} tok/s {rate:.0f}")
            out_of_time = max_minutes is not None and time.time() - start > 60 * max_minutes
            validated = self.step % t.val_every == 0 or out_of_time or self.step == t.max_steps
            patience_out = validated and self.evaluate_and_save(start)
            if stop.signum is not None:  # checkpointed unless the step was just validated
                if not validated:
                    self.save(best=False)
                self.log(f"step {self.step}: {signal.Signals(stop.signum).name}, checkpointed")
                return "interrupted"
            if patience_out:
                return "early_stopping"
            if out_of_time:
                return "max_minutes"
        return "max_steps"

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


# may change on --resume
RESUMABLE = ("max_steps", "patience", "val_every", "log_every", "prior_steps", "genre_dropout")


def _check_resume(cfg: RunConfig, data: DataDir, run: RunDir, preset, model_overrides: dict,
                  train_overrides: dict) -> None:
    """Everything --resume needs, checked before anything is written."""
    for k, v in train_overrides.items():
        if k not in RESUMABLE and getattr(cfg.train, k) != v:
            raise UserError(f"--{k.replace('_', '-')} {v}: a resumed run keeps its saved "
                            f"{k} ({getattr(cfg.train, k)}); only --max-steps, --max-minutes, "
                            "--patience, --val-every, --prior-steps and --genre-dropout may "
                            "change")
    if preset is not None and preset != cfg.train.preset:
        raise UserError(f"--preset {preset}: this run was trained as {cfg.train.preset}")
    for k, v in (model_overrides or {}).items():
        if getattr(cfg.model, k) != v:
            raise UserError(f"--{k.replace('use_', 'no-').replace('_', '-')}: a resumed run keeps "
                            "its saved model settings")
    if data.vocab_size != cfg.model.vocab_size:
        raise UserError(f"{data} does not match this run (vocabulary {data.vocab_size} vs "
                        f"{cfg.model.vocab_size})")
    if cfg.data.get("genres", [])[:len(data.genres)] != data.genres:  # a fine-tune keeps its
        raise UserError(f"{data} has other genres than this run was trained on")  # source's after

    if data.tokenizer.vocab != run.tokenizer.vocab:
        raise UserError(f"the tokenizer of {data} differs from this run's tokenizer.json")


def from_run(source, data: DataDir, preset, model_overrides: dict | None):
    """Fine-tuning: the run (or ``pretrained``) a new run starts from, checked against
    ``data``; returns (RunDir, its model config with room for the data's genres, the
    genres: the data's first, then the source's others)."""
    src = RunDir(R.resolve(source))
    if not src.is_run:
        raise UserError(f"--from {source}: not a run (no {R.CONFIG})")
    src.require_weights()
    if preset is not None or model_overrides:
        raise UserError(f"--from {source}: the model's shape is the source run's; drop --preset "
                        "and the model settings")
    theirs, ours = src.tokenizer, data.tokenizer
    if theirs.vocab != ours.vocab or theirs.config.to_dict() != ours.config.to_dict():
        raise UserError(f"--from {source}: its tokenizer differs from {data}'s (vocabulary "
                        f"{len(theirs.vocab)} vs {len(ours.vocab)} tokens or other settings): "
                        "prepare the data with this mtvae's defaults")
    mcfg = src.config.model
    if data.meta["attribute_classes"] != mcfg.n_attr_classes:
        raise UserError(f"--from {source}: {data} has {data.meta['attribute_classes']} attribute "
                        f"classes, the model {mcfg.n_attr_classes}")
    genres = data.genres + [g for g in src.config.data["genres"] if g not in data.genres]
    return src, replace(mcfg, n_genres=len(genres)), genres


def load_source_weights(model: MTVAE, src: RunDir, genres: list[str]) -> None:
    """The source run's weights into ``model``; each genre's embedding row from the source's
    row of that name, a genre it has not seen starting from the mean of its rows."""
    weights = ck.read_weights(src.require_weights())
    old = weights.pop("genre_emb.weight").float()
    named = dict(zip(src.config.data["genres"], old))
    weights["genre_emb.weight"] = torch.stack([named.get(g, old.mean(0)) for g in genres])
    ck.fit_weights(model, weights, f"--from {src.path}: its weights", IGNORED_WEIGHTS)


def train(data_dir, run_dir, preset: str | None = None, resume: bool = False, device: str = "auto",
          quiet: bool = False, max_minutes: float | None = None, model_overrides: dict | None = None,
          init_from: str | None = None, stop_on_signal: bool = False, **train_overrides) -> dict:
    """Train (or resume) a model; returns a summary dict (also in RUN_DIR/summary.json).

    Ctrl-C (SIGINT) or SIGTERM: the step in progress is finished and checkpointed (one
    process), then KeyboardInterrupt or SystemExit(143) is raised as without it; with
    ``stop_on_signal`` the summary is returned instead, with ``stopped`` "interrupted" and
    ``signal`` (the command line's way: one line and exit 128 + N).

    With ``resume``, ``max_steps``, ``max_minutes``, ``patience``, ``val_every``,
    ``prior_steps`` and ``genre_dropout`` may change; any other setting that differs from the
    saved run is an error (nothing is ignored).
    ``init_from``: fine-tune, starting from that run's weights (``pretrained``: the shipped
    model); its shape is kept, and β starts at its final value unless told otherwise."""
    data = DataDir(data_dir)
    run_dir = Path(run_dir)
    dev = torch.device(V.device(device))
    V.number("max_minutes", max_minutes, 0.0, 10**7, lo_open=True, allow_none=True)
    unknown = set(train_overrides) - {f for f in TrainConfig.__dataclass_fields__}
    if unknown:
        raise TypeError(f"train() got unknown settings: {', '.join(sorted(unknown))}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} exists and is not a folder")
    if resume and not (run_dir / R.CONFIG).is_file():
        raise UserError(f"--resume: {run_dir} is not a run (no {R.CONFIG})")
    if resume and init_from is not None:
        raise UserError("--from starts a new run; a resumed run goes on from its own checkpoint")
    TrainConfig(preset=preset or "small", **train_overrides)  # every value checked up front
    created = not run_dir.exists()
    if rank == 0:
        V.out_dir(run_dir)
    run = RunDir(run_dir)
    lock = run.lock("train") if rank == 0 else None
    if lock:
        lock.__enter__()
    try:
        summary = _train_locked(data, run, preset, resume, dev, quiet, max_minutes,
                                model_overrides, train_overrides, world, rank, init_from)
    except BaseException:
        if created and rank == 0 and {p.name for p in run_dir.iterdir()} <= {".lock"}:
            shutil.rmtree(run_dir, ignore_errors=True)  # refused before writing: leave nothing
        raise
    finally:
        if lock:
            lock.__exit__()
    if "signal" in summary and not stop_on_signal:
        raise_for(summary["signal"])
    return summary


def _train_locked(data: DataDir, run: RunDir, preset, resume: bool, dev, quiet: bool,
                  max_minutes, model_overrides, train_overrides, world: int, rank: int,
                  init_from=None) -> dict:
    if rank == 0:
        run.recover()
    fresh = False
    run_dir = run.path
    if resume:
        if not run.is_run:
            raise UserError(f"--resume: {run_dir} is not a run (no {R.CONFIG})")
        cfg = run.config
        _check_resume(cfg, data, run, preset, model_overrides, train_overrides)
        state = run.load_state()
        for k in RESUMABLE:
            if k in train_overrides:
                setattr(cfg.train, k, train_overrides[k])
        cfg = RunConfig(model=cfg.model, train=TrainConfig(**vars(cfg.train)), data=cfg.data)
        if state is None:
            print(f"note: {run_dir} has no checkpoint yet (killed before its first one): "
                  "starting it from step 0", file=sys.stderr)
    else:
        # rank 0 decides (the other ranks see the files it is writing)
        if rank == 0 and any(run_dir.iterdir()) and not run.is_fresh_leftover():
            raise UserError(f"{run_dir} already exists: pass --resume to continue it, "
                            "or choose another --out")
        fresh = True
        state = None
        meta = data.meta
        genres = data.genres
        if init_from is not None:
            source, mcfg, genres = from_run(init_from, data, preset, model_overrides)
            preset = source.config.train.preset
            # the source's window shape; the KL weight starts where the source ended (a
            # trained posterior) and the learning rate a third of the source's
            t = source.config.train
            train_overrides = {"beta_warmup_steps": 0, "beta_max": t.beta_max,
                               "segments": t.segments, "batch_size": t.batch_size,
                               "lr": t.lr / 3} | train_overrides
        else:
            preset = preset or "small"
            mcfg = model_config(preset, vocab_size=data.vocab_size, n_genres=len(data.genres),
                                pad_id=meta["pad_id"], n_attr_classes=meta["attribute_classes"],
                                **dict(model_overrides or {}))
        tcfg = TrainConfig(preset=preset, **train_overrides)
        if "infill" not in train_overrides and tcfg.infill > 0 and FILL not in data.tokenizer.vocab:
            tcfg.infill = 0.0
            if rank == 0:
                print(f"note: {data} has no {FILL} token (prepared by an older mtvae): training "
                      "without infilling; run 'mtvae prepare' again for a model that can "
                      "infill", file=sys.stderr)
        cfg = RunConfig(model=mcfg, train=tcfg, data={
            "data_dir": str(data.path.resolve()), "genres": genres,
            "attribute_edges": data.attribute_edges, "vocab_size": data.vocab_size,
            # how songs were re-barred (generation reads its inputs the same way) and the
            # train split's meters (a sample keeps the most common one unless asked)
            "meter": meta.get("meter", "keep"), "meters": meta.get("meters", {}),
        })
        if init_from is not None:
            cfg.data["from"] = {"run": str(init_from), "weights_hash": source.weights_hash()}
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
    trainer = Trainer(data, run, cfg, dev, quiet)  # reads the data: may refuse it
    if fresh and init_from is not None:
        load_source_weights(trainer.model, source, genres)
    if state is not None:
        try:
            trainer.load(state)
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{run_dir / R.STATE} does not fit this run's {R.CONFIG} "
                            f"({type(e).__name__}): delete the run folder to start over") from None
    if rank == 0:  # every check passed: now write
        if fresh:
            for name in (R.METRICS, R.LOSS_PLOT, R.SUMMARY, ck.JOURNAL):
                (run_dir / name).unlink(missing_ok=True)
            run.copy_tokenizer(data.path)
        run.save_config(cfg)
    if state is not None:
        trainer.rewrite_metrics()
    elif resume and rank == 0:
        (run_dir / R.METRICS).unlink(missing_ok=True)
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
        run.write_json(R.SUMMARY, summary)
        if (cfg.train.prior_steps > 0 and cfg.model.use_vae and run.has(R.BEST)
                and "signal" not in summary):
            from .learnt_prior import fit_prior, prior_config

            pc = prior_config(cfg, steps=cfg.train.prior_steps, seed=cfg.train.seed)
            trainer.log(f"fitting the learnt prior ({pc.steps} steps; 'mtvae prior' redoes it)")
            p = fit_prior(run, data, pc, dev, quiet)
            summary["prior"] = {k: p[k] for k in ("valid_nll_per_bar", "valid_nll_standard_normal")}
            run.write_json(R.SUMMARY, summary)
    return summary
