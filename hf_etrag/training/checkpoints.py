"""Trainer checkpoints as one unit: a `checkpoint-N` folder is either complete or never resumed from.

transformers writes a checkpoint file by file (weights, `passage_index/`, optimizer, scheduler, RNG states,
`trainer_state.json`) straight into `checkpoint-N`; a kill or a full disk in between leaves a folder that its own
"latest checkpoint" lookup would pick. [`writing_checkpoint`] brackets the whole save: before anything is written,
`checkpoint-N` holds an in-progress marker (`.etrag-checkpoint-in-progress.json`, the folder made with it inside by
one rename when it is new); the marker is removed only after every file (and every process) is done. So:

- [`latest_checkpoint`] picks the newest `checkpoint-N` that holds `trainer_state.json` and no marker;
- [`clean_stale_checkpoints`] (at the start of training) removes what interrupted saves of this `output_dir` left:
  `checkpoint-N` folders with a marker of a process that is gone, and the hidden temporary siblings hf-etrag's atomic
  writers make (`.checkpoint-N.tmp-*`, `.checkpoint-N.old-*`, `.checkpoint-N.new-*`); nothing else;
- [`resolve_resume_checkpoint`] turns `resume_from_checkpoint` = `True`, `"true"` or `"latest"` into that newest
  complete checkpoint, and refuses an explicit path to an incomplete one;
- a full disk while writing raises `OSError(ENOSPC)` whose message says "No space left on device", the checkpoint,
  the file when known, and the free space left; the incomplete folder is removed.

Two runs must not write into the same `output_dir` at once (the second one's clean-up could remove the first one's
checkpoint in progress when it runs on another host).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "IN_PROGRESS_MARKER",
    "clean_stale_checkpoints",
    "is_complete_checkpoint",
    "latest_checkpoint",
    "no_space_error",
    "resolve_resume_checkpoint",
    "writing_checkpoint",
]

IN_PROGRESS_MARKER = ".etrag-checkpoint-in-progress.json"
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_TEMPORARY = re.compile(r"^\.checkpoint-\d+\.(tmp|old|new)-")
_LATEST_WORDS = {"true", "latest"}
_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _marker_owner_alive(marker: Path) -> bool:
    """Whether the process that wrote an in-progress marker still runs (on this host); unreadable: no."""
    try:
        owner = json.loads(marker.read_text())
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_complete_checkpoint(folder: str | os.PathLike) -> bool:
    """A `checkpoint-N` whose save finished: `trainer_state.json` (written last by transformers) and no marker."""
    folder = Path(folder)
    return (
        folder.is_dir() and (folder / TRAINER_STATE).is_file() and not (folder / IN_PROGRESS_MARKER).exists()
    )


def _checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := _CHECKPOINT.match(p.name))]
    return sorted(found, key=lambda item: item[0])


def latest_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest complete `checkpoint-N` in `output_dir`, or `None`."""
    complete = [p for _, p in _checkpoints(Path(output_dir)) if is_complete_checkpoint(p)]
    return str(complete[-1]) if complete else None


def _incomplete(output_dir: Path) -> list[Path]:
    return [p for _, p in _checkpoints(output_dir) if p.is_dir() and not is_complete_checkpoint(p)]


def resolve_resume_checkpoint(
    value: str | os.PathLike | bool | None, output_dir: str | os.PathLike
) -> str | None:
    """The checkpoint folder to resume from: `None`/`False`/`"false"` -> `None`; `True`, `"true"` or `"latest"`
    (any case) -> the newest complete checkpoint of `output_dir` (an error when there is none); a path -> itself,
    refused when it is an interrupted save."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in {"", "false"}):
        return None
    output_dir = Path(output_dir)
    if value is True or (isinstance(value, str) and value.strip().lower() in _LATEST_WORDS):
        latest = latest_checkpoint(output_dir)
        if latest is None:
            skipped = _incomplete(output_dir)
            detail = (
                f" ({len(skipped)} incomplete, from interrupted saves: {', '.join(p.name for p in skipped)})"
                if skipped
                else ""
            )
            raise ValueError(
                f"`resume_from_checkpoint` asks for the latest checkpoint, but {output_dir} holds no complete "
                f"checkpoint-N{detail}. Start without `resume_from_checkpoint` (training begins at step 0), or name "
                "a checkpoint folder of another run."
            )
        return latest
    folder = Path(value)
    if (folder / IN_PROGRESS_MARKER).exists():
        latest = latest_checkpoint(folder.parent)
        raise ValueError(
            f"{folder} is an incomplete checkpoint: its save was interrupted (kill or full disk) before every file "
            f"was written, so it cannot be resumed from. Resume from the latest complete one "
            f"({latest or 'none in ' + str(folder.parent)}): `--resume_from_checkpoint latest`."
        )
    return str(folder)


def clean_stale_checkpoints(output_dir: str | os.PathLike) -> list[str]:
    """Remove what interrupted checkpoint saves left in `output_dir` (see the module docstring); returns the names
    removed. Only folders that carry hf-etrag's in-progress marker (of a process that is gone) and hf-etrag's own
    temporary names are touched."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    removed = []
    for entry in sorted(output_dir.iterdir()):
        marker = entry / IN_PROGRESS_MARKER
        stale_checkpoint = (
            _CHECKPOINT.match(entry.name) and marker.is_file() and not _marker_owner_alive(marker)
        )
        if stale_checkpoint or (_TEMPORARY.match(entry.name) and entry.is_dir()):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def _write_marker(folder: Path, step: int) -> None:
    owner = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "step": step})
    if folder.is_dir():  # a re-save of an existing checkpoint: mark it before anything in it changes
        tmp = folder / f"{IN_PROGRESS_MARKER}.tmp"
        tmp.write_text(owner)
        os.replace(tmp, folder / IN_PROGRESS_MARKER)
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.parent))
    (tmp / IN_PROGRESS_MARKER).write_text(owner)
    try:
        os.rename(tmp, folder)  # the folder appears with its marker inside, or not at all
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not folder.is_dir():
            raise
        _write_marker(folder, step)  # another process made it meanwhile


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_no_space(error: BaseException) -> bool:
    """A full disk or quota, as an `OSError` or as the text other writers (safetensors, torch) put it in."""
    if isinstance(error, OSError) and error.errno in _NO_SPACE:
        return True
    text = str(error).lower()
    return "no space left on device" in text or "os error 28" in text or "disk quota exceeded" in text


def no_space_error(error: BaseException, folder: Path, removed: bool) -> OSError:
    """`OSError(ENOSPC)` naming the checkpoint, the file (when the error knows it) and the free space."""
    filename = getattr(error, "filename", None)
    where = f"{folder}" + (f" (file {filename})" if filename else "")
    try:
        free = f"{shutil.disk_usage(folder.parent).free / 2**20:.0f} MiB free there now"
    except OSError:
        free = "free space unknown"
    fate = "the incomplete checkpoint was removed" if removed else "the incomplete checkpoint is left, marked"
    latest = latest_checkpoint(folder.parent)
    return OSError(
        errno.ENOSPC,
        f"No space left on device while writing checkpoint {where}: {fate} ({free}), and "
        f"{'the latest complete checkpoint is ' + latest if latest else 'no complete checkpoint exists yet'}. Free "
        "space on that disk, lower `save_total_limit` (older checkpoints are deleted) or raise `save_steps`, or set "
        "another `output_dir`; then resume with `--resume_from_checkpoint latest`.",
    )


@contextmanager
def writing_checkpoint(
    folder: str | os.PathLike, step: int, is_main: bool, barrier: Callable[[], None] = lambda: None
) -> Iterator[Path]:
    """Bracket the writing of one `checkpoint-N`: marked in progress before (main process; then every process
    waits), unmarked after every process is done. On an error the incomplete folder is removed (main process) and
    a full disk becomes [`no_space_error`]."""
    folder = Path(folder)
    if is_main:
        _write_marker(folder, step)
    barrier()
    try:
        yield folder
        barrier()
    except BaseException as error:
        removed = False
        if is_main and (folder / IN_PROGRESS_MARKER).exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed = not folder.exists()
        if is_no_space(error):
            raise no_space_error(error, folder, removed) from error
        raise
    if is_main:
        _fsync_folder(folder)  # the files' entries before the marker's removal
        (folder / IN_PROGRESS_MARKER).unlink()
        _fsync_folder(folder)
