"""Training objectives and auxiliary retriever losses, selected by name (`EtragConfig.objective`, `auxiliary_losses`)."""

from . import etrag, posterior  # noqa: F401  (register the built-in objectives)
from .base import (
    AuxiliaryLoss,
    ModelDrivenObjective,
    Objective,
    ObjectiveInputs,
    RetrievalObjective,
    RetrieverGenerator,
)
from .cotraining import AUXILIARY_LOSSES, build_auxiliary_loss, combine_losses, contrastive_loss
from .rag import RagSequenceLoss, RagTokenLoss
from .registry import (
    auxiliary_loss_class,
    available_auxiliary_losses,
    available_objectives,
    build_objective,
    objective_class,
    register_objective,
)

__all__ = [
    "AUXILIARY_LOSSES",
    "AuxiliaryLoss",
    "auxiliary_loss_class",
    "available_auxiliary_losses",
    "build_auxiliary_loss",
    "combine_losses",
    "contrastive_loss",
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
    "register_objective",
]
