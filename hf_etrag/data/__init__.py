"""Datasets into the model's inputs: QA tokenisation, the batch collator and the synthetic demo data."""

from .collator import EtragDataCollator
from .memory import add_memory_index, build_instance_memory
from .qa import tokenize_qa_dataset
from .synthetic import SyntheticKnowledgeBase, make_synthetic_knowledge_base

__all__ = [
    "EtragDataCollator",
    "add_memory_index",
    "build_instance_memory",
    "SyntheticKnowledgeBase",
    "make_synthetic_knowledge_base",
    "tokenize_qa_dataset",
]
