"""Tiny retriever and generator checkpoints on disk, and models assembled from them.

Adapter checkpoints record each adapted part's base by its `name_or_path`, so the PEFT, Hub and model-card tests
build their models from saved checkpoints (as a user would from Hub ids), not from bare configs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, GPT2Config

from hf_etrag import EtragModel, PassageIndex
from hf_etrag.adapters.apply import adapter_parts
from hf_etrag.tiny_models import tiny_bart_config, tiny_bert_config


def save_tiny_parts(root: Path, tokenizer) -> dict[str, str]:
    """Save a tiny BERT encoder, a tiny BART and a tiny GPT-2 under `root`; returns their folders by name."""
    torch.manual_seed(0)
    vocab = len(tokenizer)
    ids = dict(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    models = {
        "bert": AutoModel.from_config(tiny_bert_config(vocab, hidden_size=32, layers=1)),
        "bart": AutoModelForSeq2SeqLM.from_config(
            tiny_bart_config(
                vocab, ids["pad_token_id"], ids["bos_token_id"], ids["eos_token_id"], d_model=32, layers=1
            )
        ),
        "gpt2": AutoModelForCausalLM.from_config(
            GPT2Config(vocab_size=vocab, n_embd=32, n_layer=1, n_head=2, n_positions=256, **ids)
        ),
    }
    paths = {}
    for name, model in models.items():
        paths[name] = str(root / name)
        model.save_pretrained(paths[name])
    return paths


def model_from_parts(parts: dict[str, str], generator: str, index: PassageIndex, **config) -> EtragModel:
    """An `EtragModel` whose encoder and generator are loaded from the saved checkpoints, with `index` attached."""
    torch.manual_seed(0)
    config = {"n_docs": 3, "similarity": "dot", "pooling": "mean", **config}
    model = EtragModel.from_pretrained_retriever_generator(parts["bert"], parts[generator], **config)
    model.set_index(index)
    return model


@torch.no_grad()
def randomize_adapters(model: EtragModel) -> None:
    """LoRA starts as a no-op (B = 0) and IA3 as ones: give every adapter weight a random value so that a test
    comparing outputs would notice adapters that were not restored."""
    for part in adapter_parts(model).values():
        for parameter in part.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.1)
