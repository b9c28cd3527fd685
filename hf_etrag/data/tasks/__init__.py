"""The task registry: open QA, dialogue and relation extraction, one class each (see [`Task`])."""

from .base import Predictions, Task, TaskScores, TaskSettings, available_tasks, get_task, register_task
from .passages import Dialogue, OpenQa, PassageTask
from .relation_extraction import RelationExtraction
from .scoring import score_passage_task, score_relation_extraction

__all__ = [
    "Dialogue",
    "OpenQa",
    "PassageTask",
    "Predictions",
    "RelationExtraction",
    "Task",
    "TaskScores",
    "TaskSettings",
    "available_tasks",
    "get_task",
    "register_task",
    "score_passage_task",
    "score_relation_extraction",
]
