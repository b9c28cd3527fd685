"""The task registry: open QA, dialogue and relation extraction, one class each (see [`Task`])."""

from .base import Predictions, Task, TaskScores, TaskSettings, available_tasks, get_task, register_task
from .dialogue import Dialogue
from .open_qa import OpenQa
from .relation_extraction import RelationExtraction
from .scoring import score_passage_task, score_relation_extraction

__all__ = [
    "Dialogue",
    "OpenQa",
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
