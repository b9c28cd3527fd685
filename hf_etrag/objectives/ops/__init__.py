"""Pure-tensor research operators for the ETRAG and JSA-RAG objectives."""

from .mis import MISResult, exact_posterior, log_acceptance_prob, metropolis_independence_sample
from .soft_topk import soft_select, soft_topk

__all__ = [
    "MISResult",
    "exact_posterior",
    "log_acceptance_prob",
    "metropolis_independence_sample",
    "soft_select",
    "soft_topk",
]
