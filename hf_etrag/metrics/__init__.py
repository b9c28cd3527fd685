"""Evaluation metrics for retrieval-augmented generation: QA, retrieval, relation extraction, dialogue.

The plain functions are dependency-free and score in `[0, 1]`; `load_metric` wraps the same
functions as offline `evaluate` modules.
"""

from hf_etrag.metrics.dialogue import dialogue_scores, rouge_l, unigram_f1
from hf_etrag.metrics.loading import METRIC_NAMES, load_metric, metric_path
from hf_etrag.metrics.qa import exact_match, normalize_answer, squad_scores, token_f1
from hf_etrag.metrics.relation_extraction import per_relation_f1, re_micro_prf
from hf_etrag.metrics.retrieval import gold_rank, mrr, recall_at_k, retrieval_scores

__all__ = [
    "METRIC_NAMES",
    "dialogue_scores",
    "exact_match",
    "gold_rank",
    "load_metric",
    "metric_path",
    "mrr",
    "normalize_answer",
    "per_relation_f1",
    "re_micro_prf",
    "recall_at_k",
    "retrieval_scores",
    "rouge_l",
    "squad_scores",
    "token_f1",
    "unigram_f1",
]
