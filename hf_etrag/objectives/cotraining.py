"""Auxiliary retriever co-training losses, added to a main objective with per-loss weights.

Each loss is an [`AuxiliaryLoss`]: registered by name with the training objectives and called like them,
`loss(inputs: ObjectiveInputs)`; it returns ONE named term averaged over the batch. The likelihood-based losses (`emdr2`, `pdist`,
`lsr`) use the generator only as a teacher: its log-likelihoods are detached, so their gradient reaches the
retriever through `doc_scores` alone. `contrastive` is the DPR in-batch-negatives loss on the raw vectors
(`query_vectors`, `doc_vectors` and `gold_vectors` of the inputs); [`contrastive_loss`] is its tensor maths.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from .base import AuxiliaryLoss, ObjectiveInputs
from .registry import AUXILIARY_LOSSES, build_auxiliary_loss, register_objective

__all__ = [
    "AUXILIARY_LOSSES",
    "AuxiliaryLoss",
    "ContrastiveLoss",
    "Emdr2Loss",
    "LsrLoss",
    "PerplexityDistillationLoss",
    "build_auxiliary_loss",
    "combine_losses",
    "contrastive_loss",
    "in_batch_passages",
]


def _check_temperature(arg: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{arg} must be a finite number > 0, got {value!r}.")
    return value


def _detached_sequence_loglik(inputs: ObjectiveInputs) -> torch.Tensor:
    """Validate shapes and return `(B, K)` sum_t log p(y_t|x,z_k,y_<t), detached (the generator is a teacher)."""
    scores, logprobs, mask = inputs.doc_scores, inputs.target_logprobs, inputs.target_mask
    if scores.dim() != 2:
        raise ValueError(f"doc_scores must be (B, K), got shape {tuple(scores.shape)}.")
    if logprobs.dim() != 3 or logprobs.shape[:2] != scores.shape:
        raise ValueError(
            f"target_logprobs must be (B, K, T) with (B, K) = {tuple(scores.shape)}, got {tuple(logprobs.shape)}."
        )
    if mask.shape != (logprobs.shape[0], logprobs.shape[2]):
        raise ValueError(
            f"target_mask must be (B, T) = {(logprobs.shape[0], logprobs.shape[2])}, got {tuple(mask.shape)}."
        )
    # float32 so that KLs between nearly equal distributions do not drown in bf16 rounding.
    logprobs = logprobs.detach().float()
    return (logprobs * mask.unsqueeze(1).to(logprobs.dtype)).sum(-1)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Row-wise KL(p || q); terms with p_k = 0 count 0 (padded passages scored -inf would otherwise give NaN)."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)


@register_objective("emdr2")
class Emdr2Loss(AuxiliaryLoss):
    r"""EMDR$^2$ retriever loss: the marginal likelihood with the generator held fixed.

    $$\mathcal{L} = -\log \sum_{k=1}^{K} \exp\big(\mathrm{sg}(\ell_k) + \log \mathrm{softmax}_k(s)\big),
    \qquad \ell_k = \sum_t m_t \log p_G(y_t | x, z_k, y_{<t})$$

    where `sg` is stop-gradient: unlike RAG-Sequence, only the retriever scores `s` get gradient.
    Sachan et al., 2021 (NeurIPS).

    Example:
        >>> Emdr2Loss()(ObjectiveInputs(doc_scores, target_logprobs, target_mask))["emdr2_loss"]
    """

    citation: ClassVar[str] = """@inproceedings{sachan2021emdr2,
  title     = {End-to-End Training of Multi-Document Reader and Retriever for Open-Domain Question Answering},
  author    = {Sachan, Devendra Singh and Reddy, Siva and Hamilton, William L. and Dyer, Chris and
               Yogatama, Dani},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2021},
  eprint    = {2106.05346},
  archivePrefix = {arXiv}
}"""

    def forward(self, inputs: ObjectiveInputs) -> dict[str, torch.Tensor]:
        loglik = _detached_sequence_loglik(inputs)
        doc_logprobs = torch.log_softmax(inputs.doc_scores.float(), dim=-1)
        return {"emdr2_loss": -torch.logsumexp(loglik + doc_logprobs, dim=-1).mean()}


@register_objective("pdist")
class PerplexityDistillationLoss(AuxiliaryLoss):
    r"""Atlas perplexity distillation: pull the retriever towards the generator's passage posterior.

    $$\mathcal{L} = \mathrm{KL}\big(p_{LM} \,\|\, p_R\big) = \sum_k p_{LM,k} (\log p_{LM,k} - \log p_{R,k}),
    \qquad p_{LM} = \mathrm{softmax}(\mathrm{sg}(\ell)/\tau),\; p_R = \mathrm{softmax}(s)$$

    KL direction: target (LM) first, i.e. mass-covering for the retriever; `lsr` uses the reverse direction.
    Gradient reaches only `doc_scores`. Izacard et al., 2023 (JMLR).

    Example:
        >>> PerplexityDistillationLoss(temperature=0.5)(inputs)["pdist_loss"]
    """

    citation: ClassVar[str] = """@article{izacard2023atlas,
  title   = {Atlas: Few-shot Learning with Retrieval Augmented Language Models},
  author  = {Izacard, Gautier and Lewis, Patrick and Lomeli, Maria and Hosseini, Lucas and Petroni, Fabio and
             Schick, Timo and Dwivedi-Yu, Jane and Joulin, Armand and Riedel, Sebastian and Grave, Edouard},
  journal = {Journal of Machine Learning Research},
  volume  = {24},
  number  = {251},
  pages   = {1--43},
  year    = {2023},
  eprint  = {2208.03299},
  archivePrefix = {arXiv}
}"""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = _check_temperature("temperature", temperature)

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def forward(self, inputs: ObjectiveInputs) -> dict[str, torch.Tensor]:
        log_target = torch.log_softmax(_detached_sequence_loglik(inputs) / self.temperature, dim=-1)
        log_retriever = torch.log_softmax(inputs.doc_scores.float(), dim=-1)
        return {"pdist_loss": _kl(log_target, log_retriever).mean()}


@register_objective("lsr")
class LsrLoss(AuxiliaryLoss):
    r"""REPLUG LM-supervised retrieval (LSR).

    $$\mathcal{L} = \mathrm{KL}\big(P_R \,\|\, Q_{LM}\big) = \sum_k P_{R,k} (\log P_{R,k} - \log Q_{LM,k}),
    \qquad P_R = \mathrm{softmax}(s/\gamma),\; Q_{LM} = \mathrm{softmax}(\mathrm{sg}(\ell)/\beta)$$

    KL direction: retriever first (mode-seeking), the reverse of `pdist`. The paper writes $P_{LM}(y|d,x)$
    inside the softmax; like common implementations we use the sequence log-likelihood $\ell$, which is
    better scaled for long targets. Gradient reaches only `doc_scores`. Shi et al., NAACL 2024.

    Example:
        >>> LsrLoss(gamma=1.0, beta=0.1)(inputs)["lsr_loss"]
    """

    citation: ClassVar[str] = """@inproceedings{shi2024replug,
  title     = {{REPLUG}: Retrieval-Augmented Black-Box Language Models},
  author    = {Shi, Weijia and Min, Sewon and Yasunaga, Michihiro and Seo, Minjoon and James, Rich and
               Lewis, Mike and Zettlemoyer, Luke and Yih, Wen-tau},
  booktitle = {Proceedings of the 2024 Conference of the North American Chapter of the Association for
               Computational Linguistics: Human Language Technologies (Volume 1: Long Papers)},
  year      = {2024},
  eprint    = {2301.12652},
  archivePrefix = {arXiv}
}"""

    def __init__(self, gamma: float = 1.0, beta: float = 1.0) -> None:
        super().__init__()
        self.gamma = _check_temperature("gamma", gamma)
        self.beta = _check_temperature("beta", beta)

    def get_config_dict(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "beta": self.beta}

    def forward(self, inputs: ObjectiveInputs) -> dict[str, torch.Tensor]:
        log_lm = torch.log_softmax(_detached_sequence_loglik(inputs) / self.beta, dim=-1)
        log_retriever = torch.log_softmax(inputs.doc_scores.float() / self.gamma, dim=-1)
        return {"lsr_loss": _kl(log_retriever, log_lm).mean()}


def in_batch_passages(
    doc_vectors: torch.Tensor,
    doc_indices: torch.Tensor,
    gold_passage_index: torch.Tensor | None,
    gold_vectors: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[`ContrastiveLoss`] inputs for a batch: `(passages (N, H), positive (B,), passage_ids (N,))`, every
    retrieved passage `(B, K, H)` then the gold vectors of the queries whose gold row is known (`>= 0`), each with
    its corpus row, so that a retrieved copy of a query's gold passage is not counted as a negative."""
    passages = doc_vectors.reshape(-1, doc_vectors.shape[-1])
    passage_ids = doc_indices.reshape(-1).to(device=passages.device, dtype=torch.long)
    positive = torch.full((doc_vectors.shape[0],), -1, dtype=torch.long, device=passages.device)
    if gold_vectors is not None and gold_passage_index is not None:
        rows = (gold_passage_index >= 0).nonzero(as_tuple=True)[0].to(passages.device)
        positive[rows] = passages.shape[0] + torch.arange(len(rows), device=passages.device)
        passages = torch.cat([passages, gold_vectors.to(passages.dtype)], dim=0)
        passage_ids = torch.cat([passage_ids, gold_passage_index[rows].to(passage_ids)])
    return passages, positive, passage_ids


def contrastive_loss(
    query_vectors: torch.Tensor,
    passage_vectors: torch.Tensor,
    positive_index: torch.Tensor,
    temperature: float = 1.0,
    passage_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The maths of [`ContrastiveLoss`]: `query_vectors (B, H)` against `passage_vectors (N, H)`, query `i`'s
    positive at `positive_index[i]` (-1: none, the row is skipped), `passage_ids (N,)` the corpus row of each
    passage (entries that hold the positive's row are left out of its softmax). A zero connected to
    `query_vectors` when no row has a positive."""
    temperature = _check_temperature("temperature", temperature)
    if query_vectors.dim() != 2 or passage_vectors.dim() != 2:
        raise ValueError(
            f"query_vectors must be (B, H) and passage_vectors (N, H), got {tuple(query_vectors.shape)} "
            f"and {tuple(passage_vectors.shape)}."
        )
    if query_vectors.shape[1] != passage_vectors.shape[1]:
        raise ValueError(
            f"query_vectors and passage_vectors must share H, got {query_vectors.shape[1]} "
            f"and {passage_vectors.shape[1]}."
        )
    if positive_index.shape != (query_vectors.shape[0],) or positive_index.dtype != torch.long:
        raise ValueError(
            f"positive_index must be a long tensor of shape ({query_vectors.shape[0]},), got "
            f"{positive_index.dtype} {tuple(positive_index.shape)}."
        )
    n = passage_vectors.shape[0]
    if ((positive_index < -1) | (positive_index >= n)).any():
        raise ValueError(f"positive_index values must be -1 or in [0, {n}), got {positive_index.tolist()}.")
    if passage_ids is not None and (passage_ids.shape != (n,) or passage_ids.dtype != torch.long):
        raise ValueError(
            f"passage_ids must be a long tensor of shape ({n},) (one corpus row per passage), got "
            f"{passage_ids.dtype} {tuple(passage_ids.shape)}."
        )
    has_positive = positive_index >= 0
    if not has_positive.any():
        return query_vectors.sum() * 0
    positives = positive_index[has_positive]
    logits = query_vectors[has_positive].float() @ passage_vectors.float().T / temperature
    if passage_ids is not None:
        # Other entries holding the positive's passage are neither the target nor negatives.
        copies = passage_ids.unsqueeze(0) == passage_ids[positives].unsqueeze(1)
        copies[torch.arange(len(positives), device=copies.device), positives] = False
        logits = logits.masked_fill(copies, float("-inf"))
    return F.cross_entropy(logits, positives)


@register_objective("contrastive")
class ContrastiveLoss(AuxiliaryLoss):
    r"""DPR contrastive loss with in-batch negatives.

    $$\mathcal{L} = -\frac{1}{|P|}\sum_{i \in P} \log
    \frac{\exp(q_i \cdot p_{j_i} / \tau)}{\exp(q_i \cdot p_{j_i} / \tau)
    + \sum_{n \in N_i} \exp(q_i \cdot p_n / \tau)}$$

    over the rows `P` whose gold passage `j_i` is known (`gold_passage_index != -1`), with `tau` the retrieval
    temperature. The passages are the batch's retrieved ones (`doc_vectors`) plus the known gold ones
    (`gold_vectors`), each with its corpus row ([`in_batch_passages`]); the negatives `N_i` of query `i` are every
    passage except the positive's copies (the retrieved copy of its gold passage, or another query's identical
    gold): a copy in the denominator would count the positive twice and keep the loss >= log 2 however well the
    retriever ranks. Returns a zero that still connects to `query_vectors` when no row has a positive, so
    `backward()` works on every step. Karpukhin et al., 2020 (EMNLP).

    Example:
        >>> ContrastiveLoss()(inputs)["contrastive_loss"]  # inputs with query_vectors, doc_vectors, doc_indices
    """

    reads_gold_passages: ClassVar[bool] = True
    citation: ClassVar[str] = """@inproceedings{karpukhin2020dpr,
  title     = {Dense Passage Retrieval for Open-Domain Question Answering},
  author    = {Karpukhin, Vladimir and O{\\u{g}}uz, Barlas and Min, Sewon and Lewis, Patrick and Wu, Ledell and
               Edunov, Sergey and Chen, Danqi and Yih, Wen-tau},
  booktitle = {Proceedings of the 2020 Conference on Empirical Methods in Natural Language Processing (EMNLP)},
  pages     = {6769--6781},
  year      = {2020},
  eprint    = {2004.04906},
  archivePrefix = {arXiv}
}"""

    def forward(self, inputs: ObjectiveInputs) -> dict[str, torch.Tensor]:
        missing = [
            name for name in ("query_vectors", "doc_vectors", "doc_indices") if getattr(inputs, name) is None
        ]
        if missing:
            raise ValueError(
                f"The contrastive loss reads the retrieval vectors; `ObjectiveInputs` lacks {missing} (the model "
                "fills them)."
            )
        passages, positive, ids = in_batch_passages(
            inputs.doc_vectors, inputs.doc_indices, inputs.gold_passage_index, inputs.gold_vectors
        )
        loss = contrastive_loss(inputs.query_vectors, passages, positive, inputs.temperature, passage_ids=ids)
        return {"contrastive_loss": loss}


def combine_losses(
    main_terms: dict[str, torch.Tensor],
    auxiliary_terms: dict[str, dict[str, torch.Tensor]],
    weights: dict[str, float],
) -> dict[str, torch.Tensor]:
    """`loss = main["loss"] + sum_name weights[name] * aux term`; every other term is detached for logging.

    `auxiliary_terms` maps an auxiliary loss name to its one-term output; `weights` must name exactly the
    same losses. The main objective's own loss is also logged (detached) as `"main_loss"`.
    """
    if "loss" not in main_terms:
        raise ValueError(f"main_terms must contain 'loss', got keys {sorted(main_terms)}.")
    for name, weight in weights.items():
        if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"Weight of auxiliary loss {name!r} must be finite and >= 0, got {weight!r}.")
    if set(weights) != set(auxiliary_terms):
        raise ValueError(
            f"weights must name the same losses as auxiliary_terms: {sorted(weights)} vs {sorted(auxiliary_terms)}."
        )
    combined = {key: value.detach() for key, value in main_terms.items() if key != "loss"}
    combined.setdefault("main_loss", main_terms["loss"].detach())
    total = main_terms["loss"]
    for name, terms in auxiliary_terms.items():
        if len(terms) != 1:
            raise ValueError(f"Auxiliary loss {name!r} must return exactly one term, got {sorted(terms)}.")
        ((key, value),) = terms.items()
        if key in combined or key == "loss":
            raise ValueError(f"Auxiliary term {key!r} (from {name!r}) clashes with another term.")
        combined[key] = value.detach()
        # A zero weight switches a loss off entirely, so a NaN from it cannot poison the total (0 * NaN = NaN).
        if weights[name] > 0:
            total = total + weights[name] * value
    combined["loss"] = total
    return combined
