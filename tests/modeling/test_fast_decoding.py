"""RAG-Sequence fast decoding (Lewis et al. 2020): each passage proposes one answer, scored only under the
passages that proposed it."""

import pytest
import torch
from transformers import LlamaConfig

from hf_etrag import EtragModel
from hf_etrag.modeling.contexts import target_logprobs
from hf_etrag.modeling.generation import IGNORE_INDEX, answers_to_labels, generate_per_passage

from ..conftest import first_batch, make_config


def _llama_config(tokenizer):
    return LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=256, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
    )  # fmt: skip


def _model(tokenizer, index, generator=None):
    torch.manual_seed(0)
    overrides = {"generator": generator} if generator is not None else {}
    model = EtragModel(make_config(tokenizer, **overrides))
    model.set_index(index)
    return model.eval()


def _contexts(model, batch):
    query_vectors = model.encode_queries(batch["input_ids"], batch["attention_mask"])
    doc_indices = model.retrieve(query_vectors, model.config.n_docs)
    doc_vectors = model.document_vectors(doc_indices, query_vectors.device)
    doc_logprobs = torch.log_softmax(model.score_documents(query_vectors, doc_vectors), dim=-1)
    context_ids, context_mask = model.build_contexts(batch["input_ids"], batch["attention_mask"], doc_indices)
    return context_ids, context_mask, doc_logprobs


@pytest.mark.parametrize("kind", ["bart", "llama"])
def test_proposal_scores_equal_teacher_forced_log_likelihoods(tokenizer, _base_index, qa_train, kind):
    model = _model(tokenizer, _base_index, _llama_config(tokenizer) if kind == "llama" else None)
    with torch.no_grad():
        context_ids, context_mask, _ = _contexts(model, first_batch(qa_train, n=3))
    with torch.no_grad():
        proposals, scores = generate_per_passage(model, context_ids, context_mask, 5, 1, with_scores=True)
        labels = answers_to_labels(
            proposals, model.generator_pad_id, model.generator.generation_config.eos_token_id
        )
        logprobs, _ = target_logprobs(
            model.generator, context_ids, context_mask, labels, pad_id=model.generator_pad_id
        )
    expected = (logprobs * (labels != IGNORE_INDEX)).sum(-1)
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["bart", "llama"])
def test_fast_decoding_picks_the_proposal_with_the_highest_summed_joint(
    tokenizer, _base_index, qa_train, kind
):
    model = _model(tokenizer, _base_index, _llama_config(tokenizer) if kind == "llama" else None)
    batch = first_batch(qa_train, n=4)
    n_docs = model.config.n_docs
    with torch.no_grad():
        context_ids, context_mask, doc_logprobs = _contexts(model, batch)
        proposals, scores = generate_per_passage(model, context_ids, context_mask, 5, 1, with_scores=True)
        chosen = model.generate(
            batch["input_ids"], batch["attention_mask"], max_new_tokens=5, decoding="sequence_fast"
        )
    pad, eos = model.generator_pad_id, model.generator.generation_config.eos_token_id
    labels = answers_to_labels(proposals, pad, eos)
    texts = labels.masked_fill(labels == IGNORE_INDEX, pad).view(len(doc_logprobs), n_docs, -1)
    joint = (scores.view(-1, n_docs) + doc_logprobs).exp()
    for b in range(len(doc_logprobs)):
        totals: dict[tuple, float] = {}
        for k in range(n_docs):
            key = tuple(texts[b, k].tolist())
            totals[key] = totals.get(key, 0.0) + float(joint[b, k])
        best = max(totals, key=totals.get)
        assert tuple(chosen[b].tolist()) == best


def test_unknown_decoding_mode_names_the_choices(model_and_index, qa_train):
    model, _ = model_and_index
    batch = first_batch(qa_train, n=2)
    with pytest.raises(ValueError, match="sequence_fast"):
        model.generate(batch["input_ids"], batch["attention_mask"], decoding="beam")
