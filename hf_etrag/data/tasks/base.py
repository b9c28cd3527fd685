"""Tasks: each one class that loads its data into the QA schema, names the index it retrieves from, scores the
test split and knows its negative label. Chosen by name (`DataArguments.task`) from a small registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from datasets import Dataset

if TYPE_CHECKING:
    from ...retrieval.index import PassageIndex

__all__ = [
    "Predictions",
    "Task",
    "TaskScores",
    "TaskSettings",
    "available_tasks",
    "get_task",
    "register_task",
]


@dataclass
class Predictions:
    """What [`predict`] collected: for every example the top `depth` index rows (best first); for the first
    `len(texts)` examples the generated text (relation extraction: the raw label)."""

    retrieved: list[list[int]]
    texts: list[str]


@dataclass
class TaskScores:
    metrics: dict[str, float | None]
    records: list[dict[str, Any]]
    recall_at_k: dict[int, float] = field(default_factory=dict)
    per_relation: dict[str, dict[str, float]] = field(default_factory=dict)
    share_by_rank: dict[str, list[float]] = field(default_factory=dict)


class TaskSettings(Protocol):
    """The task options of a recipe (`DataArguments` has them): each task reads those it needs."""

    relation_template: str
    max_history_turns: int | None
    negative_label: str | None


class Task(ABC):
    """One task: `load` (into the QA schema), `index_kind`, `score` and `negative_label`."""

    name: ClassVar[str] = ""
    #: `"passages"`: retrieves passages of a corpus (`corpus_source`); `"instances"`: the training instances (an
    #: instance memory), which only an objective with `reads_instance_memory` keeps from retrieving themselves.
    index_kind: ClassVar[Literal["passages", "instances"]] = "passages"
    #: Decoding is restricted to the task's labels (a `LabelConstraint`), and predictions are raw labels.
    constrains_to_labels: ClassVar[bool] = False

    @property
    def has_gold_passages(self) -> bool:
        """Examples name a gold passage of the corpus (recall@k is scored; a reader warm-up can read it)."""
        return self.index_kind == "passages"

    @abstractmethod
    def load(self, source: str, split: str | None, limit: int | None, settings: TaskSettings) -> Dataset:
        """Examples in the QA schema (`id`, `question`, `answers`, ...), first `limit` only."""

    @abstractmethod
    def score(
        self, test: Dataset, predictions: Predictions, index: PassageIndex, **options: Any
    ) -> TaskScores:
        """Metrics, figure data and one record per example of a predicted test split. `options`: `ks` (the
        recall@k cut-offs), `shown` (retrieved rows shown per record), `negative_label` (tasks with labels)."""

    def negative_label(self, labels: Sequence[str], settings: TaskSettings) -> str | None:
        """The label that micro-F1 leaves out (`None`: the task has no labels)."""
        return None

    def answer_scores(self, predictions: list[str], answers: list[Any]) -> dict[str, float]:
        """Answer quality of generated texts (tasks that generate free text)."""
        raise NotImplementedError(f"task {self.name!r} scores labels, not generated answers.")


_TASKS: dict[str, Task] = {}


def register_task(name: str):
    """Class decorator: make a task selectable as `DataArguments(task=name)`."""

    def decorator(cls: type[Task]) -> type[Task]:
        if name in _TASKS and type(_TASKS[name]) is not cls:
            raise ValueError(f"A task named {name!r} is already registered ({type(_TASKS[name]).__name__}).")
        cls.name = name
        _TASKS[name] = cls()
        return cls

    return decorator


def available_tasks() -> tuple[str, ...]:
    return tuple(_TASKS)


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise ValueError(f"Unknown task {name!r}; choose one of {list(_TASKS)}.")
    return _TASKS[name]
