"""Training objectives, selected by name (`EtragConfig.objective`)."""

from . import etrag, posterior  # noqa: F401  (register the built-in objectives)
from .base import ModelDrivenObjective, Objective, ObjectiveInputs, RetrievalObjective, RetrieverGenerator
from .cotraining import AUXILIARY_LOSSES, build_auxiliary_loss, combine_losses
from .rag import RagSequenceLoss, RagTokenLoss
from .registry import (
    available_objectives,
    build_objective,
    objective_class,
    register_auxiliary_loss,
    register_objective,
)

__all__ = [
    "AUXILIARY_LOSSES",
    "build_auxiliary_loss",
    "combine_losses",
    "ModelDrivenObjective",
    "Objective",
    "ObjectiveInputs",
    "RetrievalObjective",
    "RetrieverGenerator",
    "RagSequenceLoss",
    "RagTokenLoss",
    "available_objectives",
    "build_objective",
    "objective_class",
    "register_auxiliary_loss",
    "register_objective",
]
