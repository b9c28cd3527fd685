"""Gradient diagnostics: how noisy is each objective's estimate of the retriever gradient?

For one fixed batch and fixed parameters, a retriever's gradient (the prior query encoder's, or the
posterior encoder's for jsa/vrag) is computed `repeats` times per objective. Dropout is switched off, so the only randomness left is the objective's own
(JSA's sampler, sampled VRAG); deterministic objectives (top-K marginalisation, exact VRAG) give zero
variance, and their error is bias, which this diagnostic does not measure.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..modeling.model import EtragModel
from ..objectives.posterior import PosteriorRetrieverObjective
from ..retrieval.index import PassageIndex
from ..training.callbacks import refresh_index

__all__ = ["GradientVariance", "retriever_gradient_variance"]


@dataclass
class GradientVariance:
    objective: str
    repeats: int
    mean_gradient_norm: float  # ||mean_r g_r||
    total_variance: float  # mean_r ||g_r - mean g||^2
    relative_variance: float  # total_variance / ||mean g||^2

    def row(self) -> str:
        return (
            f"{self.objective:26}{self.repeats:>8}{self.mean_gradient_norm:>16.4e}"
            f"{self.total_variance:>16.4e}{self.relative_variance:>12.4f}"
        )


HEADER = f"{'objective':26}{'repeats':>8}{'|E[g]|':>16}{'E|g-E[g]|^2':>16}{'relative':>12}"


def _without_dropout(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def retriever_gradient_variance(
    base_model: EtragModel,
    batch: dict[str, torch.Tensor],
    objective: str,
    repeats: int = 16,
    objective_kwargs: dict | None = None,
    seed: int = 0,
    index: PassageIndex | None = None,
    part: str = "query_encoder",
) -> GradientVariance:
    """Repeat the query-encoder gradient of `objective` on `batch` and summarise its spread.

    `index` replaces the model's passage index (ETRAG reads an instance memory instead); it is encoded
    with the model's document encoder when it has no embeddings yet. `part` names the module whose
    gradient is measured: `"query_encoder"` (the prior retriever) or `"posterior_encoder"` (jsa, vrag)."""
    if repeats < 2:
        raise ValueError(f"`repeats` must be at least 2 to estimate a variance; got {repeats}.")
    model = copy.deepcopy(base_model)
    model.config.objective = objective
    model.config.objective_kwargs = dict(objective_kwargs or {})
    model.set_objective(objective, auxiliary_losses=model.auxiliary_losses, **model.config.objective_kwargs)
    model.set_index(index if index is not None else base_model.index)
    if model.index.embeddings is None:
        refresh_index(model)
    model.train()
    _without_dropout(model)
    if part == "query_encoder":
        measured = model.query_encoder
    elif part == "posterior_encoder" and isinstance(model.objective, PosteriorRetrieverObjective):
        measured = model.objective.posterior_encoder
    else:
        raise ValueError(
            f"`part` must be 'query_encoder' or, for jsa/vrag, 'posterior_encoder'; got {part!r}."
        )
    parameters = [p for p in measured.parameters() if p.requires_grad]
    torch.manual_seed(seed)
    gradients = []
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        gradients.append(
            torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in parameters])
        )
    stacked = torch.stack(gradients).double()
    mean = stacked.mean(0)
    total_variance = float(((stacked - mean) ** 2).sum(1).mean())
    mean_norm = float(mean.norm())
    return GradientVariance(
        objective=objective,
        repeats=repeats,
        mean_gradient_norm=mean_norm,
        total_variance=total_variance,
        relative_variance=total_variance / max(mean_norm**2, 1e-30),
    )
