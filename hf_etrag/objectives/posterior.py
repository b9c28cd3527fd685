"""Objectives with a posterior retriever q(h|x,y): JSA-RAG (Cao et al. 2025) and its VRAG baseline.

Both keep a second query encoder that reads the query joined with the target, score a candidate set
(the union of the prior's and the posterior's top-n passages) with both retrievers, and score the
target under every candidate with the generator. At inference only the prior retriever is used.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .base import ModelDrivenObjective, RetrieverGenerator
from .ops.mis import metropolis_independence_sample
from .registry import register_objective

__all__ = ["CandidateScores", "JsaLoss", "VragLoss", "PosteriorRetrieverObjective"]

_JSA_CITATION = """@article{cao2025jsarag,
  title         = {Improving End-to-End Training of Retrieval-Augmented Generation Models via Joint Stochastic
                   Approximation},
  author        = {Cao, Hongyu and Wu, Yuxuan and Cai, Yucheng and Zhao, Xianyu and Ou, Zhijian},
  year          = {2025},
  eprint        = {2508.18168},
  archivePrefix = {arXiv}
}"""

# VRAG is the variational (ELBO) baseline as defined and evaluated in the JSA-RAG paper.
_VRAG_CITATION = _JSA_CITATION


@dataclass
class CandidateScores:
    """Scores over each example's candidate passages (the union of prior and posterior top-n).

    Attributes:
        doc_indices: `(B, M)` corpus rows; duplicates of an earlier column are masked out.
        valid: `(B, M)` False for masked duplicates.
        prior_logprobs: `(B, M)` log p(h|x) over the candidates (gradient to the prior retriever).
        posterior_logprobs: `(B, M)` log q(h|x,y) over the candidates (gradient to the posterior encoder).
        sequence_logprobs: `(B, M)` log p(y|x,h) (gradient to the generator).
        prior_scores: `(B, M)` unnormalised prior scores, for logging.
    """

    doc_indices: torch.Tensor
    valid: torch.Tensor
    prior_logprobs: torch.Tensor
    posterior_logprobs: torch.Tensor
    sequence_logprobs: torch.Tensor
    prior_scores: torch.Tensor


def _mask_duplicates(indices: torch.Tensor) -> torch.Tensor:
    """`(B, M)` True where the passage did not already appear earlier in the row."""
    same = indices.unsqueeze(2) == indices.unsqueeze(1)  # (B, M, M): [b, j, i] = idx_j == idx_i
    earlier = torch.ones_like(same[0], dtype=torch.bool).tril(-1)  # i < j
    return ~(same & earlier).any(-1)


class PosteriorRetrieverObjective(ModelDrivenObjective):
    """Shared machinery: the posterior encoder, the candidate set and the scores over it."""

    def __init__(self, posterior_n_docs: int | None = None) -> None:
        super().__init__()
        if posterior_n_docs is not None and posterior_n_docs < 1:
            raise ValueError(f"`posterior_n_docs` must be >= 1; got {posterior_n_docs}.")
        self.posterior_n_docs = posterior_n_docs
        self.posterior_encoder: nn.Module | None = None

    def setup(self, model: RetrieverGenerator) -> None:
        """Create the posterior query encoder, starting from the prior query encoder's weights."""
        self.posterior_encoder = copy.deepcopy(model.query_encoder)

    def posterior_inputs(
        self, model: RetrieverGenerator, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The query joined with its target, in the retriever's vocabulary."""
        if batch.get("posterior_input_ids") is not None:
            return batch["posterior_input_ids"], batch["posterior_attention_mask"]
        if batch.get("generator_input_ids") is not None:
            raise ValueError(
                "The generator's tokenizer differs from the retriever's, so the posterior retriever cannot read "
                "the labels: add `posterior_input_ids`/`posterior_attention_mask` (query + target tokenised by "
                "the retriever's tokenizer) to the dataset."
            )
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        rows = []
        for row in range(ids.shape[0]):
            query = ids[row, : int(mask[row].sum())]
            target = labels[row][labels[row] != -100]
            rows.append(torch.cat([query, target]))
        width = max(len(r) for r in rows)
        joined = ids.new_full((len(rows), width), model.retriever_pad_id)
        joined_mask = torch.zeros_like(joined)
        for row, tokens in enumerate(rows):
            joined[row, : len(tokens)] = tokens
            joined_mask[row, : len(tokens)] = 1
        return joined, joined_mask

    def score_candidates(
        self, model: RetrieverGenerator, query_vectors: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> CandidateScores:
        n_prior = model.config.n_docs
        n_posterior = self.posterior_n_docs or n_prior
        post_ids, post_mask = self.posterior_inputs(model, batch)
        posterior_vectors = model.encode_with(self.posterior_encoder, post_ids, post_mask)
        candidates = torch.cat(
            [model.retrieve(query_vectors, n_prior), model.retrieve(posterior_vectors, n_posterior)], dim=1
        )
        valid = _mask_duplicates(candidates)
        doc_vectors = model.document_vectors(candidates, query_vectors.device)
        prior_scores = model.score_documents(query_vectors, doc_vectors).masked_fill(~valid, float("-inf"))
        posterior_scores = model.score_documents(posterior_vectors, doc_vectors).masked_fill(
            ~valid, float("-inf")
        )
        logprobs, _ = model.target_logprobs_for(candidates, batch)  # (B, M, T)
        mask = (batch["labels"] != -100).unsqueeze(1).to(logprobs.dtype)
        return CandidateScores(
            doc_indices=candidates,
            valid=valid,
            prior_logprobs=torch.log_softmax(prior_scores, dim=-1),
            posterior_logprobs=torch.log_softmax(posterior_scores, dim=-1),
            sequence_logprobs=(logprobs * mask).sum(-1),
            prior_scores=prior_scores,
        )

    def model_loss(
        self, model: RetrieverGenerator, query_vectors: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """`(terms, doc_scores, doc_indices)`: the loss terms, and the prior's scores of the candidates."""
        scores = self.score_candidates(model, query_vectors, batch)
        return self.loss_from_scores(scores), scores.prior_scores, scores.doc_indices

    def loss_from_scores(self, scores: CandidateScores) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def _zero_invalid(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    # -inf log-probabilities of masked duplicates times zero weight would give NaN; they contribute nothing.
    return values.masked_fill(~valid, 0.0)


@register_objective("jsa")
class JsaLoss(PosteriorRetrieverObjective):
    r"""JSA-RAG: joint stochastic approximation with a Metropolis independence sampler (Cao et al. 2025).

    Target distribution over the candidates: $\pi(h) \propto p(h|x)\,p(y|x,h)$; proposal: the posterior
    retriever $q(h|x,y)$. A chain of `mis_steps` steps accepts $h'$ with probability
    $\min\{1, \frac{p(y|x,h')p(h'|x)q(h|x,y)}{p(y|x,h)p(h|x)q(h'|x,y)}\}$, computed without gradient.
    With $w_h$ the frequency of $h$ among the chain states,

    $$\mathcal{L} = \sum_h w_h \left[-\log p(y|x,h) - \log p(h|x) - \log q(h|x,y)\right],$$

    so the generator, the prior retriever and the posterior retriever each get a maximum-likelihood
    gradient on the sampled passages. Logs `jsa_acceptance_rate`.

    Args:
        mis_steps: sampler steps per example.
        posterior_n_docs: posterior top-n added to the prior's top-n (default: `n_docs`).
    """

    citation: ClassVar[str] = _JSA_CITATION
    decoding = "sequence"

    def __init__(self, mis_steps: int = 8, posterior_n_docs: int | None = None) -> None:
        super().__init__(posterior_n_docs)
        if mis_steps < 1:
            raise ValueError(f"`mis_steps` must be >= 1; got {mis_steps}.")
        self.mis_steps = mis_steps

    def get_config_dict(self) -> dict[str, Any]:
        return {"mis_steps": self.mis_steps, "posterior_n_docs": self.posterior_n_docs}

    def loss_from_scores(self, scores: CandidateScores) -> dict[str, torch.Tensor]:
        log_target = (scores.prior_logprobs + scores.sequence_logprobs).detach()
        result = metropolis_independence_sample(
            log_target, scores.posterior_logprobs.detach(), num_steps=self.mis_steps
        )
        weights = result.sample_weights(scores.doc_indices.shape[1]).to(scores.sequence_logprobs.dtype)
        generator_nll = -(weights * _zero_invalid(scores.sequence_logprobs, scores.valid)).sum(-1).mean()
        prior_nll = -(weights * _zero_invalid(scores.prior_logprobs, scores.valid)).sum(-1).mean()
        posterior_nll = -(weights * _zero_invalid(scores.posterior_logprobs, scores.valid)).sum(-1).mean()
        return {
            "loss": generator_nll + prior_nll + posterior_nll,
            "generator_nll": generator_nll.detach(),
            "prior_nll": prior_nll.detach(),
            "posterior_nll": posterior_nll.detach(),
            "jsa_acceptance_rate": result.acceptance_rate.detach(),
        }


@register_objective("vrag")
class VragLoss(PosteriorRetrieverObjective):
    r"""VRAG, the variational baseline of JSA-RAG: the negative ELBO with the posterior retriever.

    $$\mathcal{L} = \mathbb{E}_{q(h|x,y)}[-\log p(y|x,h)] + \beta\,\mathrm{KL}(q(h|x,y)\,\|\,p(h|x))$$

    With `estimator="exact"` (default) the expectation is enumerated over the candidate set, so the
    posterior encoder gets its gradient through q directly. `estimator="sampled"` draws `num_samples`
    passages from q and uses the score-function (REINFORCE) gradient with a leave-one-out baseline: the
    higher-variance estimator that JSA-RAG compares against.

    Args:
        beta: weight of the KL term.
        posterior_n_docs: posterior top-n added to the prior's top-n (default: `n_docs`).
        estimator: `"exact"` or `"sampled"`.
        num_samples: passages drawn from q per example with `estimator="sampled"`.
    """

    citation: ClassVar[str] = _VRAG_CITATION
    decoding = "sequence"

    def __init__(
        self,
        beta: float = 1.0,
        posterior_n_docs: int | None = None,
        estimator: str = "exact",
        num_samples: int = 4,
    ) -> None:
        super().__init__(posterior_n_docs)
        if not beta >= 0:
            raise ValueError(f"`beta` must be >= 0; got {beta}.")
        if estimator not in ("exact", "sampled"):
            raise ValueError(f"`estimator` must be 'exact' or 'sampled'; got {estimator!r}.")
        if num_samples < 2:
            raise ValueError(
                f"`num_samples` must be >= 2 (the baseline leaves one sample out); got {num_samples}."
            )
        self.beta = beta
        self.estimator = estimator
        self.num_samples = num_samples

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "posterior_n_docs": self.posterior_n_docs,
            "estimator": self.estimator,
            "num_samples": self.num_samples,
        }

    def _sampled_expected_nll(self, scores: CandidateScores) -> torch.Tensor:
        """Monte Carlo E_q[-log p(y|x,h)] with the score-function gradient for q (leave-one-out baseline),
        the estimator of the VRAG baseline in JSA-RAG, whose variance the JSA paper compares against."""
        samples = torch.multinomial(
            scores.posterior_logprobs.detach().exp(), self.num_samples, replacement=True
        )
        nll = -scores.sequence_logprobs.gather(1, samples)  # (B, S), gradient to the generator
        log_q = scores.posterior_logprobs.gather(1, samples)
        reward = nll.detach()
        baseline = (reward.sum(1, keepdim=True) - reward) / (self.num_samples - 1)
        surrogate = nll + (reward - baseline) * log_q
        return surrogate.mean(1).mean()

    def loss_from_scores(self, scores: CandidateScores) -> dict[str, torch.Tensor]:
        q = scores.posterior_logprobs.exp()
        if self.estimator == "sampled":
            expected_nll = self._sampled_expected_nll(scores)
        else:
            expected_nll = -(q * _zero_invalid(scores.sequence_logprobs, scores.valid)).sum(-1).mean()
        log_ratio = _zero_invalid(scores.posterior_logprobs - scores.prior_logprobs, scores.valid)
        kl = (q * log_ratio).sum(-1).mean()
        return {
            "loss": expected_nll + self.beta * kl,
            "generator_nll": expected_nll.detach(),
            "kl_posterior_prior": kl.detach(),
        }
