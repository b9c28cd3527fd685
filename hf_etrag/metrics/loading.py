"""Load the packaged `evaluate` metric scripts from disk, so no Hub access is ever needed."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import evaluate

METRIC_NAMES: tuple[str, ...] = ("dialogue", "re_f1", "retrieval", "squad_open")
"""Names accepted by `load_metric`, one per folder under `evaluate_modules/`."""

_MODULES_DIR = Path(__file__).resolve().parent / "evaluate_modules"


def metric_path(name: str) -> Path:
    """Folder of the packaged `evaluate` script for `name`; `ValueError` listing valid names if unknown."""
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; valid names are: {', '.join(METRIC_NAMES)}")
    return _MODULES_DIR / name


def load_metric(name: str, **kwargs: Any) -> "evaluate.EvaluationModule":
    """`evaluate.load` the packaged metric `name` from its local folder; `kwargs` are passed through.

    ```python
    >>> load_metric("re_f1", keep_in_memory=True).compute(predictions=["a"], references=["a"])
    {'precision': 1.0, 'recall': 1.0, 'f1': 1.0}
    ```
    """
    path = metric_path(name)
    # Imported lazily: `evaluate` pulls in datasets and pyarrow, which the plain functions do not need.
    import evaluate

    return evaluate.load(str(path), **kwargs)
