"""Objectives are chosen by name: each module registers its class here (like peft's `register_peft_method`).

One registry holds both kinds: the training objectives (`EtragConfig.objective`) and the auxiliary retriever
losses added to a top-K objective with a weight (`EtragConfig.auxiliary_losses`); a class says which it is with
its `auxiliary` attribute, and both are called alike (`forward(inputs: ObjectiveInputs) -> dict[str, Tensor]`).

This module imports nothing of the package; `hf_etrag.objectives` (whose `__init__` runs before any of its
modules) imports the built-in objectives, so that they are registered whichever module is imported first."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Objective

__all__ = [
    "AUXILIARY_LOSSES",
    "auxiliary_loss_class",
    "available_auxiliary_losses",
    "available_objectives",
    "build_auxiliary_loss",
    "build_objective",
    "objective_class",
    "register_objective",
]

_REGISTRY: dict[str, type[Objective]] = {}


class _Kind(Mapping):
    """The registered classes of one kind (training objectives or auxiliary losses), by name: a live view."""

    def __init__(self, auxiliary: bool) -> None:
        self._auxiliary = auxiliary

    def __getitem__(self, name: str) -> type[Objective]:
        cls = _REGISTRY[name]
        if cls.auxiliary != self._auxiliary:
            raise KeyError(name)
        return cls

    def __iter__(self) -> Iterator[str]:
        return (name for name, cls in _REGISTRY.items() if cls.auxiliary == self._auxiliary)

    def __len__(self) -> int:
        return sum(1 for _ in self)


_OBJECTIVES = _Kind(auxiliary=False)
#: Auxiliary retriever losses (`EtragConfig.auxiliary_losses`), added to a top-K objective with a weight.
AUXILIARY_LOSSES: Mapping[str, type[Objective]] = _Kind(auxiliary=True)


def register_objective(name: str):
    """Class decorator: make an objective selectable as `EtragConfig(objective=name)`, or an auxiliary loss (a
    class with `auxiliary = True`) as `EtragConfig(auxiliary_losses={name: weight})`."""

    def decorator(cls: type[Objective]) -> type[Objective]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(
                f"An objective named {name!r} is already registered ({_REGISTRY[name].__name__})."
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_objectives() -> tuple[str, ...]:
    return tuple(sorted(_OBJECTIVES))


def available_auxiliary_losses() -> tuple[str, ...]:
    return tuple(sorted(AUXILIARY_LOSSES))


def objective_class(name: str) -> type[Objective]:
    if name not in _OBJECTIVES:
        raise ValueError(f"Unknown objective {name!r}; choose one of {sorted(_OBJECTIVES)}.")
    return _OBJECTIVES[name]


def auxiliary_loss_class(name: str) -> type[Objective]:
    if name not in AUXILIARY_LOSSES:
        raise ValueError(f"Unknown auxiliary loss {name!r}; choose one of {sorted(AUXILIARY_LOSSES)}.")
    return AUXILIARY_LOSSES[name]


def build_objective(name: str, **kwargs: Any) -> Objective:
    return objective_class(name)(**kwargs)


def build_auxiliary_loss(name: str, **kwargs: Any) -> Objective:
    return auxiliary_loss_class(name)(**kwargs)
