"""Boundary checks shared by the metric modules, so every metric reports bad input the same way, and the
per-record loop of the corpus-level text metrics."""

from collections.abc import Callable, Sequence, Sized
from statistics import fmean


def check_same_length(first_name: str, first: Sized, second_name: str, second: Sized) -> None:
    """Raise `ValueError` naming both lengths when two parallel inputs differ in length."""
    if len(first) != len(second):
        raise ValueError(
            f"{first_name} and {second_name} must have the same length, "
            f"got {len(first)} {first_name} and {len(second)} {second_name}"
        )


def check_k(k: object) -> int:
    """Return `k` if it is an integer >= 1, else raise `ValueError` naming it."""
    # bool is an int subclass; `k=True` is almost certainly a bug, not "top-1".
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got k={k!r}")
    return k


def check_str(value: object, name: str, index: int) -> str:
    """Return `value` if it is a `str`, else raise `TypeError` naming `name[index]`."""
    if not isinstance(value, str):
        raise TypeError(f"{name}[{index}] must be a str, got {type(value).__name__}")
    return value


def as_str_list(value: object, name: str, index: int) -> list[str]:
    """Normalise one reference record to a non-empty list of strings.

    A bare `str` is one reference; a `list`/`tuple` of `str` is several. Anything else raises
    `TypeError` and an empty list raises `ValueError`, both naming `name[index]`.
    """
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list | tuple):
        raise TypeError(f"{name}[{index}] must be a str or a list of str, got {type(value).__name__}")
    for item in value:
        if not isinstance(item, str):
            raise TypeError(
                f"{name}[{index}] must be a str or a list of str, got an item of type {type(item).__name__}"
            )
    if not value:
        raise ValueError(f"{name}[{index}] is empty; at least one reference is needed")
    return list(value)


def mean_per_record(
    predictions: Sequence[object],
    references: Sequence[object],
    scorers: dict[str, Callable[[str, list[str]], float]],
) -> dict[str, float]:
    """Check the records, score each prediction against its reference(s) with every scorer and return each
    scorer's mean (0.0 when there are no records)."""
    check_same_length("predictions", predictions, "references", references)
    scores: dict[str, list[float]] = {name: [] for name in scorers}
    for index, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        check_str(prediction, "predictions", index)
        golds = as_str_list(reference, "references", index)
        for name, scorer in scorers.items():
            scores[name].append(scorer(prediction, golds))
    return {name: fmean(values) if values else 0.0 for name, values in scores.items()}
