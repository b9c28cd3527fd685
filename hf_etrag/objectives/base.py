"""What every objective receives and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

__all__ = ["ObjectiveInputs", "RetrievalObjective"]


@dataclass
class ObjectiveInputs:
    """Scores of one batch after retrieval.

    Attributes:
        doc_scores: `(B, K)` retrieval scores `sim(q, d_k) / temperature`, with gradient to the encoders.
        target_logprobs: `(B, K, T)` log p(y_t | x, z_k, y_<t) of each target token under each passage.
        target_mask: `(B, T)` 1 where `y_t` is a real target token, 0 for padding.
    """

    doc_scores: torch.Tensor
    target_logprobs: torch.Tensor
    target_mask: torch.Tensor


class RetrievalObjective(nn.Module):
    """Base class: `forward(inputs) -> dict` of named loss terms, `"loss"` being their weighted sum."""

    name: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    #: How `EtragModel.generate` decodes for models trained with this objective.
    decoding: ClassVar[Literal["sequence", "token", "soft_prompt"]] = "sequence"

    def forward(self, inputs: ObjectiveInputs) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def get_config_dict(self) -> dict[str, Any]:
        """Options shown on the model card."""
        return {}
