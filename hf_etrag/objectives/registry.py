"""Objectives are chosen by name: each module registers its class here (like peft's `register_peft_method`).

This module imports nothing of the package; `hf_etrag.objectives` (whose `__init__` runs before any of its
modules) imports the built-in objectives, so that they are registered whichever module is imported first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Objective

__all__ = ["register_objective", "available_objectives", "build_objective", "objective_class"]

_OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(name: str):
    """Class decorator: make an objective selectable as `EtragConfig(objective=name)`."""

    def decorator(cls: type[Objective]) -> type[Objective]:
        if name in _OBJECTIVES and _OBJECTIVES[name] is not cls:
            raise ValueError(
                f"An objective named {name!r} is already registered ({_OBJECTIVES[name].__name__})."
            )
        cls.name = name
        _OBJECTIVES[name] = cls
        return cls

    return decorator


def available_objectives() -> tuple[str, ...]:
    return tuple(sorted(_OBJECTIVES))


def objective_class(name: str) -> type[Objective]:
    if name not in _OBJECTIVES:
        raise ValueError(f"Unknown objective {name!r}; choose one of {sorted(_OBJECTIVES)}.")
    return _OBJECTIVES[name]


def build_objective(name: str, **kwargs: Any) -> Objective:
    return objective_class(name)(**kwargs)
