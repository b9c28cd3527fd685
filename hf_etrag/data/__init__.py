"""Datasets into the model's inputs: dataset adapters, QA tokenisation, label-restricted decoding, the batch
collator and the synthetic demo data."""

from .adapters import (
    DEFAULT_RELATION_TEMPLATE,
    SEMEVAL_NEGATIVE_LABEL,
    TACRED_NEGATIVE_LABEL,
    load_corpus,
    load_dialogue,
    load_open_qa,
    load_relation_extraction,
    relation_labels,
    verbalize_labels,
    verbalize_relation,
)
from .collator import EtragDataCollator
from .labels import LabelConstraint, restrict_to_labels
from .memory import add_memory_index, build_instance_memory
from .qa import tokenize_qa_dataset, tokenize_questions
from .synthetic import SyntheticKnowledgeBase, make_synthetic_knowledge_base

__all__ = [
    "DEFAULT_RELATION_TEMPLATE",
    "SEMEVAL_NEGATIVE_LABEL",
    "TACRED_NEGATIVE_LABEL",
    "EtragDataCollator",
    "LabelConstraint",
    "load_corpus",
    "load_dialogue",
    "load_open_qa",
    "load_relation_extraction",
    "relation_labels",
    "restrict_to_labels",
    "verbalize_labels",
    "verbalize_relation",
    "add_memory_index",
    "build_instance_memory",
    "SyntheticKnowledgeBase",
    "make_synthetic_knowledge_base",
    "tokenize_qa_dataset",
    "tokenize_questions",
]
