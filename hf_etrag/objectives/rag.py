"""RAG-Sequence and RAG-Token top-K marginal likelihood (Lewis et al., 2020)."""

from __future__ import annotations

from typing import ClassVar

import torch

from .base import ObjectiveInputs, RetrievalObjective
from .registry import register_objective

__all__ = ["RagSequenceLoss", "RagTokenLoss"]

_RAG_CITATION = """@inproceedings{lewis2020rag,
  title     = {Retrieval-Augmented Generation for Knowledge-Intensive {NLP} Tasks},
  author    = {Lewis, Patrick and Perez, Ethan and Piktus, Aleksandra and Petroni, Fabio and Karpukhin, Vladimir
               and Goyal, Naman and K{\\"u}ttler, Heinrich and Lewis, Mike and Yih, Wen-tau and
               Rockt{\\"a}schel, Tim and Riedel, Sebastian and Kiela, Douwe},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2020},
  eprint    = {2005.11401},
  archivePrefix = {arXiv}
}"""


@register_objective("rag_sequence")
class RagSequenceLoss(RetrievalObjective):
    r"""RAG-Sequence: one passage explains the whole target.

    $$-\log p(y|x) = -\log \sum_{k=1}^{K} p_R(z_k|x) \prod_t p_G(y_t | x, z_k, y_{<t}),
    \qquad p_R(z_k|x) = \mathrm{softmax}_k(s_k)$$

    over the K retrieved passages. The loss is summed over target tokens and averaged over the batch; the
    per-example values equal transformers' `RagSequenceForGeneration.get_nll(..., epsilon=0)`.
    Gradient reaches the retriever through `doc_scores` and the generator through `target_logprobs`.

    Example:
        >>> loss = RagSequenceLoss()(ObjectiveInputs(doc_scores, target_logprobs, target_mask))["loss"]
    """

    citation: ClassVar[str] = _RAG_CITATION
    decoding = "sequence"

    def per_example_nll(self, inputs: ObjectiveInputs) -> torch.Tensor:
        doc_logprobs = torch.log_softmax(inputs.doc_scores, dim=-1)
        mask = inputs.target_mask.unsqueeze(1).to(inputs.target_logprobs.dtype)
        sequence_logprobs = (inputs.target_logprobs * mask).sum(-1)
        return -torch.logsumexp(doc_logprobs + sequence_logprobs, dim=-1)

    def forward(self, inputs: ObjectiveInputs) -> dict[str, torch.Tensor]:
        nll = self.per_example_nll(inputs).mean()
        return {"loss": nll, "generator_nll": nll.detach()}


@register_objective("rag_token")
class RagTokenLoss(RetrievalObjective):
    r"""RAG-Token: each target token may draw on a different passage.

    $$-\log p(y|x) = -\sum_t \log \sum_{k=1}^{K} p_R(z_k|x)\, p_G(y_t | x, z_k, y_{<t})$$

    Per-example values equal transformers' `RagTokenForGeneration.get_nll(..., epsilon=0)`.
    """

    citation: ClassVar[str] = _RAG_CITATION
    decoding = "token"

    def per_example_nll(self, inputs: ObjectiveInputs) -> torch.Tensor:
        doc_logprobs = torch.log_softmax(inputs.doc_scores, dim=-1)
        token_logprobs = torch.logsumexp(doc_logprobs.unsqueeze(-1) + inputs.target_logprobs, dim=1)
        return -(token_logprobs * inputs.target_mask.to(token_logprobs.dtype)).sum(-1)

    def forward(self, inputs: ObjectiveInputs) -> dict[str, torch.Tensor]:
        nll = self.per_example_nll(inputs).mean()
        return {"loss": nll, "generator_nll": nll.detach()}
