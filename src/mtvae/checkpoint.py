"""Checkpoints and other artefacts, written so that no crash, kill or full disk damages a run.

* ``atomic_write``: every file is written to a temporary name, flushed to disk and renamed,
  so a process killed at any moment leaves the previous version loadable.
* ``commit``: the files of one training checkpoint (weights, last weights, training state) form
  one set. All are first written under temporary names (a failure there, a full disk for
  instance, removes them and leaves the previous set untouched); then a journal
  (``checkpoint.json``) names them; then they are renamed into place and the journal is marked
  done. ``recover`` finishes the renames a killed process left, so the files on disk always
  hold one step.
* Weights are safetensors; the training state (optimizer, scheduler, RNG) is read with
  ``torch.load(weights_only=True)``: no pickle of arbitrary objects is ever read. Damaged
  files are refused with one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_model

from .errors import UserError

JOURNAL = "checkpoint.json"
PENDING = ".pending"


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_failure(path: str | Path, exc: BaseException) -> OSError:
    """The one error a failed write becomes. Writers report a full disk in many ways (numpy:
    an OSError without errno; torch and safetensors: RuntimeError), so the disk is asked."""
    import errno
    import resource

    code = getattr(exc, "errno", None)
    full = code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    try:
        st = os.statvfs(Path(path).parent)
        full = full or st.f_bavail * st.f_frsize < 64 * 2**20
    except OSError:
        pass
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    full = full or limit != resource.RLIM_INFINITY  # a file-size limit acts like a full disk
    if full:
        return OSError(errno.ENOSPC, "disk full", str(path))
    return OSError(code or errno.EIO, f"cannot write ({type(exc).__name__}: "
                                      f"{' '.join(str(exc).split())[:120]})", str(path))


def _guarded(path, write, tmp) -> None:
    try:
        write(str(tmp))
        # the user's umask, like any other program's files (mkstemp's and some writers'
        # 0600 would otherwise survive the rename)
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp)
    except (KeyboardInterrupt, SystemExit, UserError):
        raise
    except BaseException as e:  # noqa: BLE001 - see write_failure
        raise write_failure(path, e) from e


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``; nothing is left behind on failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        _guarded(path, write, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


# ----------------------------------------------------------------------------- checkpoint sets


def commit(run_dir: str | Path, files: dict, step: int) -> None:
    """Write ``{name: write(tmp_path)}`` into ``run_dir`` as one set (see the module doc)."""
    run_dir = Path(run_dir)
    pending: dict[str, str] = {}
    try:
        for name, write in files.items():
            tmp = run_dir / f".{name}.{step}{PENDING}"
            pending[name] = tmp.name
            _guarded(run_dir / name, write, tmp)
        write_text(run_dir / JOURNAL, json.dumps({"step": step, "pending": pending}))
    except BaseException:
        for tmp in pending.values():
            (run_dir / tmp).unlink(missing_ok=True)
        raise
    _finish(run_dir, step, pending)


def _finish(run_dir: Path, step: int, pending: dict[str, str]) -> None:
    for name, tmp in pending.items():
        try:
            os.replace(run_dir / tmp, run_dir / name)
        except FileNotFoundError:
            pass  # already moved by an earlier, interrupted finish
    write_text(run_dir / JOURNAL, json.dumps({"step": step, "files": sorted(pending)}))


def recover(run_dir: str | Path) -> int | None:
    """Finish a commit a killed process left and remove its orphan temporary files.

    Call only while holding the run's lock. Returns the committed step (None: no checkpoint)."""
    run_dir = Path(run_dir)
    step = None
    journal = run_dir / JOURNAL
    if journal.is_file():
        try:
            j = json.loads(journal.read_text())
            step = int(j["step"])
            if "pending" in j:
                _finish(run_dir, step, dict(j["pending"]))
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{journal} is damaged ({e}): delete it if the training state is "
                            "good") from None
    for orphan in list(run_dir.glob(".*.tmp")) + list(run_dir.glob(f".*{PENDING}")):
        orphan.unlink(missing_ok=True)
    return step


class FolderLock:
    """An exclusive lock on a RUN_DIR or DATA_DIR for one writer (a POSIX lock on ``.lock``);
    the kernel releases it when the process ends, however it ends. POSIX locks belong to the
    process, so forked workers do not hold it after their parent died."""

    def __init__(self, folder: str | Path, what: str):
        self.path, self.what, self.fd = Path(folder) / ".lock", what, None

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise UserError(f"{self.path.parent} is in use by another mtvae {self.what} "
                            "(wait for it to finish, or choose another folder)") from None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# ----------------------------------------------------------------------------- files


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict | None = None) -> None:
    atomic_write(path, lambda tmp: save_model(model, tmp, metadata=weights_meta(metadata)))


def weights_meta(metadata: dict | None) -> dict:
    return {k: str(v) for k, v in (metadata or {}).items()}


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, or one line saying why not."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - a truncated, foreign or missing file
        raise UserError(f"{path} is damaged ({' '.join(str(e).split())[:160]})") from None


def fit_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str,
                ignore: tuple[str, ...] = ()) -> None:
    """Copy ``tensors`` into ``model``; every tensor of the model must be given (a tied
    tensor, such as an output head sharing its embedding, once under any of its names) and
    every given tensor used, but those whose names start with one of ``ignore`` (parts a model
    no longer has). ``source`` names the tensors' origin in the one-line refusal."""
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except Exception as e:  # noqa: BLE001 - a shape that differs
        first = " ".join(str(e).split())[:160]
        raise UserError(f"{source} does not fit this run's config.json ({first})") from None
    own = model.state_dict()
    names: dict[int, set[str]] = {}
    for k, v in own.items():
        names.setdefault(v.data_ptr(), set()).add(k)
    missing = [k for k in missing if not names[own[k].data_ptr()] & tensors.keys()]
    unexpected = [k for k in unexpected if not k.startswith(ignore)]
    if missing or unexpected:
        raise UserError(f"{source} does not fit this run's config.json ({len(missing)} tensors "
                        f"missing, {len(unexpected)} unexpected, e.g. "
                        f"{(list(missing) + list(unexpected))[0]})")


def load_weights(model: torch.nn.Module, path: str | Path, ignore: tuple[str, ...] = ()) -> None:
    """Load every tensor of ``model`` from a safetensors file (``fit_weights``)."""
    fit_weights(model, read_weights(path), str(path), ignore)


def weights_metadata(path: str | Path) -> dict:
    """The string metadata saved in a safetensors file, or one line saying why not."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file
        raise UserError(f"{path} is damaged ({' '.join(str(e).split())[:120]})") from None


STATE_KEYS = {"model": dict, "optimizer": dict, "scheduler": dict, "step": int,
              "best": float, "bad_rounds": int, "history": list, "torch_rng": torch.Tensor}


def load_state(path: str | Path) -> dict:
    """The training state, or one line saying why it cannot be used."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, random bytes, a forbidden pickle ...
        raise UserError(f"{path} is damaged ({type(e).__name__}): it cannot be resumed; "
                        "delete the run folder to start over") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} is not an mtvae training state")
    for key, kind in STATE_KEYS.items():
        if not isinstance(state.get(key), kind) and not (kind is float and isinstance(state.get(key), int)):
            raise UserError(f"{path} is not an mtvae training state (field {key!r})")
    return state


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
