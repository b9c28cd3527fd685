"""Datasets into the model's inputs: QA tokenisation, the batch collator and the synthetic demo data."""

from .collator import EtragDataCollator
from .qa import tokenize_qa_dataset
from .synthetic import SyntheticKnowledgeBase, make_synthetic_knowledge_base

__all__ = [
    "EtragDataCollator",
    "SyntheticKnowledgeBase",
    "make_synthetic_knowledge_base",
    "tokenize_qa_dataset",
]
