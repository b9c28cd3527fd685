"""Where the adapters' records come from, and how a bad record is reported.

A `source` is one of

- a local `.json` (a list of objects) or `.jsonl` (one object per line) file;
- a local folder plus a `split`: `<folder>/<split>.jsonl` or `<folder>/<split>.json`;
- anything else is a Hugging Face Hub dataset id, loaded with `datasets.load_dataset(source, split=split)`.

Local files are read with `datasets.load_dataset("json", ...)` and converted with one batched `Dataset.map`.
When records disagree in a field's type, datasets 5 stores that column as `Json()` (huggingface/datasets#8027)
and decodes its strings as JSON on the way out (`"007"` comes back as `7`), which would both change values
and blame the wrong record. Such a file is converted from the records as Python's `json` reads them instead,
so the check sees the types the file really holds (the round trip can go once datasets keeps scalar strings).
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, Features

__all__ = ["RawSource", "RecordContext", "SourceInfo", "map_records", "read_source"]

_SUFFIXES = (".jsonl", ".json")


@dataclass(frozen=True)
class SourceInfo:
    """A dataset's name in error messages, and how its records are numbered there."""

    name: str
    json_lines: bool = False

    @property
    def stem(self) -> str:
        return Path(self.name).stem if self.name.endswith(_SUFFIXES) else self.name.replace("/", "-")

    def where(self, row: int, record_id: Any) -> str:
        position = f"line {row + 1}" if self.json_lines else f"position {row}"
        return f"{self.name}, record {record_id!r} ({position})"


@dataclass(frozen=True)
class RecordContext:
    """One record being converted: builds errors that name the file, the record and the field."""

    info: SourceInfo
    row: int
    record_id: Any

    def error(self, field: str, problem: str, fix: str) -> ValueError:
        return ValueError(f"{self.info.where(self.row, self.record_id)}: field `{field}` {problem}. {fix}")

    def text(self, record: Mapping[str, Any], field: str, fix: str = "") -> str:
        """A required, non-blank string."""
        value = record.get(field)
        if value is None:
            raise self.error(field, "is missing", fix or f"Add `{field}` (a non-empty string).")
        if not isinstance(value, str):
            raise self.error(field, f"must be a string, got {type(value).__name__} {value!r}", fix)
        if not value.strip():
            raise self.error(field, "is empty", fix or f"Give `{field}` some text or drop the record.")
        return value

    def integer(self, record: Mapping[str, Any], field: str) -> int:
        value = record.get(field)
        if value is None:
            raise self.error(field, "is missing", f"Add `{field}` (an integer word index).")
        # Arrow reads a column mixing 3 and 3.5 as floats, so a whole float (3.0) counts as the integer.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(field, f"must be an integer, got {type(value).__name__} {value!r}", "")
        return value

    def text_list(self, record: Mapping[str, Any], field: str, what: str) -> list[str]:
        """A required, non-empty list of strings (`what` says what the list holds, for the fix)."""
        value = record.get(field)
        if value is None:
            raise self.error(field, "is missing", f"Add `{field}`: a non-empty list of {what}.")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(
                field,
                f"must be a list of strings, got {value!r}",
                f"Write `{field}` as a JSON list of {what}.",
            )
        if not value:
            raise self.error(field, "is an empty list", f"Give at least one of {what}, or drop the record.")
        return value

    def optional_id(self, record: Mapping[str, Any], field: str) -> str | None:
        """An optional identifier: a string or an integer (made a string, as corpus ids are)."""
        value = record.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.error(field, f"must be a string id, got {type(value).__name__} {value!r}", "")
        return str(value)


def _split_file(folder: Path, split: str | None) -> Path:
    available = sorted({p.stem for p in folder.iterdir() if p.suffix in _SUFFIXES})
    if split is None:
        raise ValueError(
            f"{folder} is a folder: pass `split` to choose a file in it (available splits: {available})."
        )
    found = [folder / f"{split}{suffix}" for suffix in _SUFFIXES if (folder / f"{split}{suffix}").is_file()]
    if not found:
        raise ValueError(
            f"Split {split!r} not found in {folder}: expected {split}.jsonl or {split}.json. "
            f"Available splits: {available}."
        )
    if len(found) > 1:
        raise ValueError(
            f"Split {split!r} is ambiguous in {folder}: both {found[0].name} and {found[1].name} exist."
        )
    return found[0]


@dataclass(frozen=True)
class RawSource:
    """The records of a source: `dataset` as datasets loaded it, `exact_records` (the same records as
    Python's `json` reads them) only for a local file whose fields disagree in type (see the module docstring)."""

    dataset: Dataset
    info: SourceInfo
    exact_records: list[dict[str, Any]] | None = None


def _has_json_column(feature: Any) -> bool:
    if isinstance(feature, datasets.Json):
        return True
    if isinstance(feature, dict):
        return any(_has_json_column(f) for f in feature.values())
    return _has_json_column(feature.feature) if hasattr(feature, "feature") else False


def _exact_records(file: Path) -> list[dict[str, Any]]:
    with file.open(encoding="utf-8") as handle:
        if file.suffix == ".jsonl":
            records = [json.loads(line) for line in handle if line.strip()]
        else:
            loaded = json.load(handle)
            records = loaded if isinstance(loaded, list) else [loaded]
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"{file}: record {row} is {record!r}, not a JSON object with named fields.")
    return records


def _looks_local(source: str) -> bool:
    return source.endswith(_SUFFIXES) or source.startswith((os.sep, ".", "~"))


def _check_utf8(file: Path, chunk_size: int = 1 << 20) -> None:
    """Refuse a file that is not UTF-8, naming the line and byte (datasets reads it, then fails on the first row
    read with a `UnicodeDecodeError` that names no file)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 1
    with file.open("rb") as handle:
        while True:
            chunk = handle.read(chunk_size)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as error:
                position = max(error.start, 0)
                line = lines + chunk[:position].count(b"\n")
                raise ValueError(
                    f"{file} is not UTF-8 text: byte {error.object[error.start]:#04x} on line {line} (offset {offset + position}) "
                    "is not valid UTF-8 (a Latin-1 or Windows-1252 file?). Fix: save the file as UTF-8, e.g. "
                    f"`iconv -f latin1 -t utf-8 {file.name} > fixed.{file.suffix.lstrip('.')}`."
                ) from None
            if not chunk:
                return
            offset, lines = offset + len(chunk), lines + chunk.count(b"\n")


def _read_json(file: Path) -> Dataset:
    if file.stat().st_size == 0:
        raise ValueError(f"{file} is empty: it needs at least one record.")
    _check_utf8(file)
    try:
        return datasets.load_dataset("json", data_files=str(file), split="train")
    except (datasets.exceptions.DatasetGenerationError, ValueError, StopIteration) as error:
        cause = error.__cause__ or error
        raise ValueError(
            f"Could not read {file} as JSON ({type(cause).__name__}: {cause}). A .jsonl file needs one JSON "
            "object per line and a .json file one list of objects, with at least one record."
        ) from error


def _read_hub(source: str, split: str | None) -> Dataset:
    try:
        dataset = datasets.load_dataset(source, split=split)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{source!r} is not a local file or folder, and loading it as a Hub dataset failed "
            f"({type(error).__name__}: {error}). Check the path, or go online for Hub datasets."
        ) from error
    if not isinstance(dataset, Dataset):
        raise ValueError(
            f"Hub dataset {source!r} has several splits {list(dataset)}: pass `split` to choose one."
        )
    return dataset


def read_source(
    source: str | os.PathLike[str],
    split: str | None = None,
    columns: Mapping[str, str] | None = None,
    limit: int | None = None,
) -> RawSource:
    """Load the raw records of `source` (see the module docstring) and name them for error messages.

    `split` is ignored for a single file (it names a file in a folder or a Hub split); `columns` renames
    source columns to the adapter's field names first (e.g. `{"utterance": "question"}`); `limit` keeps the
    first records only, before any check.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"`limit` must be a positive integer or None; got {limit!r}.")
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        path = _split_file(path, split)
    exact = None
    if path.is_file():
        dataset, info = _read_json(path), SourceInfo(str(path), json_lines=path.suffix == ".jsonl")
        if _has_json_column(dataset.features):
            exact = _exact_records(path)
    elif _looks_local(text):
        raise FileNotFoundError(f"No such file or folder: {text!r}. Pass a .json/.jsonl file or a folder.")
    else:
        dataset, info = _read_hub(text, split), SourceInfo(f"{text}[{split}]")
    if len(dataset) == 0:
        raise ValueError(f"{info.name} has no records.")
    if columns:
        unknown = sorted(set(columns) - set(dataset.column_names))
        if unknown:
            raise ValueError(
                f"`columns` renames {unknown}, which {info.name} lacks; its columns are {dataset.column_names}."
            )
        dataset = dataset.rename_columns(dict(columns))
        if exact is not None:
            exact = [{columns.get(k, k): v for k, v in record.items()} for record in exact]
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
        exact = exact[:limit] if exact is not None else None
    return RawSource(dataset, info, exact)


def map_records(
    source: RawSource,
    convert: Callable[[dict[str, Any], RecordContext], dict[str, Any]],
    features: Features,
    required: tuple[str, ...],
    desc: str,
) -> Dataset:
    """Check and convert every record into the adapter's schema with one batched `Dataset.map` (or, for a
    file whose fields disagree in type, over its exact records).

    A field absent from every record is reported against the first record; records lacking an `id` get
    `<file stem>-<position>`.
    """
    dataset, info = source.dataset, source.info
    for field in required:
        if field not in dataset.column_names:
            first = dataset[0].get("id") or f"{info.stem}-0"
            raise RecordContext(info, 0, first).error(
                field,
                "is missing",
                f"Every record needs {list(required)}; columns found: {dataset.column_names}.",
            )
    names = dataset.column_names

    def _one(record: dict[str, Any], row: int) -> dict[str, Any]:
        raw_id = record.get("id")
        context = RecordContext(info, row, raw_id if raw_id is not None else f"{info.stem}-{row}")
        record_id = context.optional_id(record, "id") or str(context.record_id)
        return {**convert(record, context), "id": record_id}

    if source.exact_records is not None:
        rows = [_one(record, row) for row, record in enumerate(source.exact_records)]
        return Dataset.from_list([{name: r[name] for name in features} for r in rows], features=features)

    def _convert(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in features}
        for offset, row in enumerate(indices):
            converted = _one({name: batch[name][offset] for name in names}, row)
            for name in features:
                out[name].append(converted[name])
        return out

    return dataset.map(
        _convert, batched=True, with_indices=True, remove_columns=names, features=features, desc=desc
    )
