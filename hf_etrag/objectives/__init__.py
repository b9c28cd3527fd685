"""Training objectives, selected by name (`EtragConfig.objective`)."""

from .base import ObjectiveInputs, RetrievalObjective
from .cotraining import AUXILIARY_LOSSES, build_auxiliary_loss, combine_losses
from .rag import RagSequenceLoss, RagTokenLoss
from .registry import available_objectives, build_objective, objective_class, register_objective

__all__ = [
    "AUXILIARY_LOSSES",
    "build_auxiliary_loss",
    "combine_losses",
    "ObjectiveInputs",
    "RetrievalObjective",
    "RagSequenceLoss",
    "RagTokenLoss",
    "available_objectives",
    "build_objective",
    "objective_class",
    "register_objective",
]
