"""Atomic folder writes: build the new folder as a temporary sibling, then rename it into place.

A crash or an exception while writing leaves the previous folder untouched and loadable; only renames happen
after the new content is complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_directory", "replace_directory"]


@contextmanager
def atomic_directory(target: str | os.PathLike, keep_other_entries: bool = True) -> Iterator[Path]:
    """Yield an empty temporary sibling of `target`; when the block ends without error, it replaces `target`.

    With `keep_other_entries`, entries of an existing `target` that the new content does not write (e.g. the
    `checkpoint-*` folders in a Trainer's `output_dir`) stay where they are; see [`replace_directory`].
    On error the temporary folder is removed and `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        replace_directory(tmp, target, keep_other_entries=keep_other_entries)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_directory(new: Path, target: Path, keep_other_entries: bool = False) -> None:
    """Swap `new` into `target`, deleting the old content only after the new is in place.

    When `keep_other_entries` and `target` holds entries `new` does not write, those are left where they are and
    `new`'s entries are renamed in one by one (each rename atomic), so nothing of the user's is ever moved.
    """
    backup = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(backup, ignore_errors=True)
    foreign = (
        keep_other_entries
        and target.is_dir()
        and any(not (new / entry.name).exists() for entry in target.iterdir())
    )
    if not foreign:
        if target.exists():
            os.replace(target, backup)
        os.replace(new, target)
        shutil.rmtree(backup, ignore_errors=True)
        return
    backup.mkdir()
    for entry in sorted(
        new.iterdir(), key=lambda e: e.name == "config.json"
    ):  # config last: it marks completeness
        old = target / entry.name
        if old.exists():
            os.replace(old, backup / entry.name)
        os.replace(entry, old)
    shutil.rmtree(backup, ignore_errors=True)
    shutil.rmtree(new, ignore_errors=True)
