"""Objectives are chosen by name: each module registers its class here (like peft's `register_peft_method`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import RetrievalObjective

__all__ = ["register_objective", "available_objectives", "build_objective", "objective_class"]

_OBJECTIVES: dict[str, type[RetrievalObjective]] = {}


def register_objective(name: str):
    """Class decorator: make an objective selectable as `EtragConfig(objective=name)`."""

    def decorator(cls: type[RetrievalObjective]) -> type[RetrievalObjective]:
        if name in _OBJECTIVES and _OBJECTIVES[name] is not cls:
            raise ValueError(
                f"An objective named {name!r} is already registered ({_OBJECTIVES[name].__name__})."
            )
        cls.name = name
        _OBJECTIVES[name] = cls
        return cls

    return decorator


def _ensure_builtin_objectives_loaded() -> None:
    # Imported lazily so that this registry module itself has no dependencies (no import cycles).
    from . import etrag, posterior, rag  # noqa: F401


def available_objectives() -> tuple[str, ...]:
    _ensure_builtin_objectives_loaded()
    return tuple(sorted(_OBJECTIVES))


def objective_class(name: str) -> type[RetrievalObjective]:
    _ensure_builtin_objectives_loaded()
    if name not in _OBJECTIVES:
        raise ValueError(f"Unknown objective {name!r}; choose one of {sorted(_OBJECTIVES)}.")
    return _OBJECTIVES[name]


def build_objective(name: str, **kwargs: Any) -> RetrievalObjective:
    return objective_class(name)(**kwargs)
