"""Folder writes that are atomic and never remove what they did not write.

The new content is built in a temporary sibling folder, then renamed into place: a crash or an exception while
writing leaves the previous folder untouched and loadable; only renames happen after the new content is complete.

Every writer names its [`OutputKind`]: the marker file it always writes (how an earlier output of the same kind is
recognised), the top-level names it writes, and whether it owns its folder or shares it:

- an owned folder (a passage index, an evaluation report) must be missing, empty, or an earlier output of the same
  kind; anything else is refused with [`OutputFolderError`] before anything is written. An earlier output is
  replaced: its entries of the kind are swapped for the new ones (one rename of the whole folder when it holds
  nothing else), and any other entry (a file someone put there) stays where it is.
- a shared folder (a model saved into a Trainer's `output_dir`, next to `checkpoint-*`) keeps every other entry; an
  entry of the same name as a new one is replaced only when the folder holds an earlier output of the same kind,
  else the save is refused.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "OutputFolderError",
    "OutputKind",
    "atomic_directory",
    "atomic_write_text",
    "check_output_folder",
    "json_marker",
    "replace_directory",
]


class OutputFolderError(FileExistsError, ValueError):
    """A write would replace or remove files that hf-etrag did not write: nothing was written. A `ValueError` too,
    so that the commands report it as a bad argument (exit status 2)."""


def json_marker(predicate: Callable[[dict], bool]) -> Callable[[Path], bool]:
    """A marker test: the marker is a JSON object for which `predicate` holds."""

    def recognise(path: Path) -> bool:
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(value, dict) and bool(predicate(value))

    return recognise


@dataclass(frozen=True)
class OutputKind:
    """What one writer puts into a folder.

    Args:
        name: the kind in messages ("passage index").
        marker: a file the writer always writes; an existing folder holding it (and passing `recognise`) is an
            earlier output of this kind.
        entries: `fnmatch` patterns of the top-level names the writer writes (marker included); in an earlier
            output, entries that match and that the new content does not write are stale and removed.
        fix: the sentence that tells the user what to do instead (`{folder}` is filled in).
        shares_folder: the folder may hold other things (a model in a Trainer's `output_dir`).
        recognise: an extra test of the marker's content (default: it exists).
    """

    name: str
    marker: str
    entries: tuple[str, ...]
    fix: str
    shares_folder: bool = False
    recognise: Callable[[Path], bool] | None = None

    def owns(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.entries)

    def holds_earlier_output(self, folder: Path) -> bool:
        marker = folder / self.marker
        return marker.is_file() and (self.recognise is None or self.recognise(marker))


def _listing(names: list[str], most: int = 4) -> str:
    shown = ", ".join(sorted(names)[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _a(name: str) -> str:
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _refuse(folder: Path, kind: OutputKind, reason: str) -> OutputFolderError:
    return OutputFolderError(
        f"Refusing to write the {kind.name} into {folder}: {reason}, so writing there would replace files that "
        f"hf-etrag did not write. Nothing was written. {kind.fix.format(folder=folder)}"
    )


def check_output_folder(
    target: str | os.PathLike, kind: OutputKind, new_entries: list[str] | None = None
) -> None:
    """Raise [`OutputFolderError`] unless `kind` may write into `target` (see the module docstring).

    Called before anything is written; `new_entries` (the names about to be written, when known) lets a shared
    folder that holds no earlier output through as long as none of its entries would be replaced."""
    folder = Path(target)
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir():
        raise _refuse(folder, kind, "it is a file, not a folder")
    present = [entry.name for entry in folder.iterdir()]
    if not present or kind.holds_earlier_output(folder):
        return
    if (folder / kind.marker).exists():
        raise _refuse(folder, kind, f"its {kind.marker} was not written by hf-etrag's {kind.name} writer")
    if not kind.shares_folder:
        reason = f"it holds other files ({_listing(present)}) and is not {_a(kind.name)} (no {kind.marker})"
        raise _refuse(folder, kind, reason)
    clashes = [name for name in present if name in (new_entries or [])]
    if clashes:
        raise _refuse(
            folder, kind, f"it holds {_listing(clashes)} but is not {_a(kind.name)} (no {kind.marker})"
        )


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through a temporary sibling and `os.replace`: a reader sees the old file or
    the whole new one, never a truncated one (a kill or a full disk while writing leaves the old file)."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes it 0600
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@contextmanager
def atomic_directory(target: str | os.PathLike, kind: OutputKind) -> Iterator[Path]:
    """Yield an empty temporary sibling of `target`; when the block ends without error, it replaces `target`.

    `target` is checked against `kind` first ([`check_output_folder`]; again, with the names written, before the
    swap). On error the temporary folder is removed and `target` is left as it was."""
    target = Path(target)
    check_output_folder(target, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        check_output_folder(target, kind, [entry.name for entry in tmp.iterdir()])
        replace_directory(tmp, target, kind)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_directory(new: Path, target: Path, kind: OutputKind) -> None:
    """Swap `new` into `target`, deleting the old content only after the new is in place.

    Entries of `target` that `new` does not write stay, unless they are stale entries of an earlier output of
    `kind` (an owned folder). When `target` holds such other entries, `new`'s entries are renamed in one by one
    (each rename atomic, the marker last: it marks completeness), so nothing else is ever moved."""
    backup = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(backup, ignore_errors=True)
    written = {entry.name for entry in new.iterdir()}
    present = [entry.name for entry in target.iterdir()] if target.is_dir() else []
    stale = [] if kind.shares_folder else [n for n in present if n not in written and kind.owns(n)]
    others = [n for n in present if n not in written and n not in stale]
    if not others:
        if target.exists():
            os.replace(target, backup)
        os.replace(new, target)
        shutil.rmtree(backup, ignore_errors=True)
        return
    backup.mkdir()
    for name in stale:
        os.replace(target / name, backup / name)
    for name in sorted(written, key=lambda n: n == kind.marker):
        if (target / name).exists():
            os.replace(target / name, backup / name)
        os.replace(new / name, target / name)
    shutil.rmtree(backup, ignore_errors=True)
    shutil.rmtree(new, ignore_errors=True)
