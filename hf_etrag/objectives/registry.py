"""Objectives are chosen by name: each module registers its class here (like peft's `register_peft_method`).

This module imports nothing of the package; `hf_etrag.objectives` (whose `__init__` runs before any of its
modules) imports the built-in objectives, so that they are registered whichever module is imported first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Objective

__all__ = [
    "AUXILIARY_LOSSES",
    "available_objectives",
    "build_auxiliary_loss",
    "build_objective",
    "objective_class",
    "register_auxiliary_loss",
    "register_objective",
]

_OBJECTIVES: dict[str, type[Objective]] = {}
#: Auxiliary retriever losses (`EtragConfig.auxiliary_losses`), added to a top-K objective with a weight.
AUXILIARY_LOSSES: dict[str, type[Any]] = {}


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


def register_auxiliary_loss(name: str):
    """Class decorator: make an auxiliary loss selectable in `EtragConfig(auxiliary_losses={name: weight})`."""

    def decorator(cls: type[Any]) -> type[Any]:
        cls.name = name
        AUXILIARY_LOSSES[name] = cls
        return cls

    return decorator


def build_auxiliary_loss(name: str, **kwargs: Any) -> Any:
    if name not in AUXILIARY_LOSSES:
        raise ValueError(f"Unknown auxiliary loss {name!r}; choose one of {sorted(AUXILIARY_LOSSES)}.")
    return AUXILIARY_LOSSES[name](**kwargs)
