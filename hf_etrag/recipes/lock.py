"""One `hf-etrag train` per `output_dir` at a time: a lock file in the folder.

A second run into the same `output_dir` would overwrite the first one's checkpoints, model and index while the
first still writes them. `hf-etrag train` takes [`output_dir_lock`] before it loads anything: the lock file is
made with `O_CREAT | O_EXCL` (only one process can make it) and holds the owner's pid and host. A second run finds
it and is refused with [`OutputDirLockedError`]. A lock whose pid no longer runs on this host (a run killed with
`kill -9` or a power cut) is stale: the next run takes it over with a warning.

Under `accelerate launch` only the main process (`RANK` and `LOCAL_RANK` unset or 0) takes the lock; the others
write into the folder under its protection.

The file name starts with `_`: the Trainer's `push_to_hub` uploads `output_dir` without `_*` files, and no writer
of hf-etrag owns or removes that name (a model save keeps every entry it did not write).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK_FILE", "OutputDirLockedError", "output_dir_lock"]

LOCK_FILE = "_etrag_train.lock"

logger = logging.getLogger(__name__)


class OutputDirLockedError(FileExistsError, ValueError):
    """Another `hf-etrag train` holds the `output_dir` (a `ValueError` too: the command exits with status 2)."""


def _is_main_process() -> bool:
    return all(os.environ.get(name, "0") in ("0", "-1", "") for name in ("RANK", "LOCAL_RANK"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, under another user
        return True
    return True


def _read_owner(path: Path) -> dict:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _create(path: Path) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname()}
    handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(json.dumps(record) + "\n")


@contextlib.contextmanager
def output_dir_lock(output_dir: str | os.PathLike) -> Iterator[Path | None]:
    """Hold the lock of `output_dir` (made if missing) for the block; yields the lock file (`None` on a process
    that is not the main one, which takes no lock). Raises [`OutputDirLockedError`] when a live run holds it."""
    if not _is_main_process():
        yield None
        return
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    for _attempt in range(3):
        try:
            _create(path)
            break
        except FileExistsError:
            owner = _read_owner(path)
            pid, host = owner.get("pid"), owner.get("host")
            here = socket.gethostname()
            if isinstance(pid, int) and host == here and pid != os.getpid() and not _pid_alive(pid):
                logger.warning(
                    "Taking over the stale lock %s: the run that made it (pid %d on %s) no longer runs (killed?). "
                    "Its checkpoints stay; `--resume_from_checkpoint latest` continues from them.",
                    path,
                    pid,
                    host,
                )
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            who = f"pid {pid} on {host}" if pid is not None else "an unknown process (unreadable lock file)"
            if host not in (None, here):
                check = f"it may still run there; if it does not, delete {path}"
            elif pid is None:
                check = f"if no run uses this folder, delete {path}"
            else:
                check = f"wait for it to finish or stop it (`kill {pid}`)"
            raise OutputDirLockedError(
                f"Refusing to train into {folder}: another `hf-etrag train` ({who}) is writing there (lock file "
                f"{path}), and a second run would overwrite its checkpoints and model. Fix: set another "
                f"`output_dir`, or {check}."
            ) from None
    else:  # pragma: no cover - three takeovers lost in a row to other runs
        raise OutputDirLockedError(f"Could not take the lock {path}: other runs keep taking it.")
    try:
        yield path
    finally:
        if _read_owner(path).get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
