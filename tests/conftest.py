"""Tiny models, a tokenizer trained on the fly and a small synthetic corpus, built once per session and
deep-copied per test (as sentence-transformers' conftest does)."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import BertModel  # noqa: E402

from hf_etrag import EtragConfig, EtragModel, PassageIndex, tokenize_corpus  # noqa: E402
from hf_etrag.data import make_synthetic_knowledge_base, tokenize_qa_dataset  # noqa: E402
from hf_etrag.tiny_models import (  # noqa: E402
    tiny_bert_config,
    tiny_etrag_config,
    train_wordpiece_tokenizer,
)
from hf_etrag.training.arguments import EtragTrainingArguments  # noqa: E402
from hf_etrag.training.callbacks import refresh_index  # noqa: E402


@pytest.fixture(scope="session")
def knowledge_base():
    return make_synthetic_knowledge_base(n_people=12, seed=1)


@pytest.fixture(scope="session")
def tokenizer(knowledge_base):
    texts = list(knowledge_base.corpus["text"]) + list(knowledge_base.train["question"])
    return train_wordpiece_tokenizer(texts, vocab_size=400)


@pytest.fixture(scope="session")
def tokenized_corpus(knowledge_base, tokenizer):
    return tokenize_corpus(knowledge_base.corpus, tokenizer, max_passage_length=48)


@pytest.fixture(scope="session")
def qa_train(knowledge_base, tokenizer, tokenized_corpus):
    ids = [str(i) for i in tokenized_corpus["id"]]
    return tokenize_qa_dataset(knowledge_base.train, tokenizer, passage_ids=ids)


@pytest.fixture(scope="session")
def tiny_open_qa_files(tmp_path_factory, knowledge_base, tokenizer) -> dict[str, str]:
    """Files a tiny `hf-etrag train` open-QA recipe reads: `bert`, a tiny BERT retriever folder (the default
    bert2bert generator warm-starts from it), and `qa`, a folder with the knowledge base's corpus.jsonl and
    train.jsonl."""
    root = tmp_path_factory.mktemp("tiny_open_qa")
    BertModel(tiny_bert_config(len(tokenizer), hidden_size=32, layers=1)).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    (root / "qa").mkdir()
    for name, rows in (("corpus", knowledge_base.corpus), ("train", knowledge_base.train)):
        (root / "qa" / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return {"bert": str(root / "bert"), "qa": str(root / "qa")}


def make_training_args(tmp_path, **overrides) -> EtragTrainingArguments:
    """Small, deterministic CPU training arguments for the trainer tests; `overrides` replace any field."""
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=1e-2,
        max_steps=4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return EtragTrainingArguments(**kwargs)


def make_config(tokenizer, **overrides) -> EtragConfig:
    return tiny_etrag_config(tokenizer, **{"similarity": "dot", "pooling": "mean", **overrides})


@pytest.fixture(scope="session")
def _base_model(tokenizer):
    torch.manual_seed(0)
    return EtragModel(make_config(tokenizer))


@pytest.fixture(scope="session")
def _base_index(_base_model, tokenized_corpus):
    index = PassageIndex(tokenized_corpus)
    _base_model.set_index(index)
    refresh_index(_base_model)
    _base_model.set_index(None)
    return index


@pytest.fixture
def model_and_index(_base_model, _base_index):
    """A fresh copy of the tiny model with its own copy of an already-built index."""
    model = copy.deepcopy(_base_model)
    index = PassageIndex(_base_index.corpus, embeddings=_base_index.embeddings.copy())
    model.set_index(index)
    return model, index


def first_batch(dataset, n: int = 4) -> dict[str, torch.Tensor]:
    from hf_etrag.data import EtragDataCollator

    rows = [{k: dataset[i][k] for k in ("input_ids", "labels", "gold_passage_index")} for i in range(n)]
    return EtragDataCollator(0, 0)(rows)


def grad_norm(module: torch.nn.Module) -> float:
    """Sum of absolute gradients over a module's parameters (0 when none received a gradient)."""
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)
