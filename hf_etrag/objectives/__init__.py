"""Training objectives, selected by name (`EtragConfig.objective`)."""

from .base import ObjectiveInputs, RetrievalObjective
from .rag import RagSequenceLoss, RagTokenLoss
from .registry import available_objectives, build_objective, objective_class, register_objective

__all__ = [
    "ObjectiveInputs",
    "RetrievalObjective",
    "RagSequenceLoss",
    "RagTokenLoss",
    "available_objectives",
    "build_objective",
    "objective_class",
    "register_objective",
]
