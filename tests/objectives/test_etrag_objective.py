"""The ETRAG objective: differentiable top-k over the training-instance memory, fused as soft prompts."""

import copy

import pytest
import torch

from hf_etrag import EtragModel, PassageIndex
from hf_etrag.data import EtragDataCollator, add_memory_index, build_instance_memory, tokenize_qa_dataset
from hf_etrag.training.callbacks import refresh_index

from ..conftest import grad_norm, make_config


@pytest.fixture
def etrag_setup(knowledge_base, tokenizer):
    def build(k=2, separate_doc_encoder=True, **kwargs):
        torch.manual_seed(0)
        config = make_config(tokenizer, objective="etrag", objective_kwargs={"k": k, "tau": 0.5, **kwargs})
        if separate_doc_encoder:
            config.doc_encoder = copy.deepcopy(config.query_encoder)
        model = EtragModel(config)
        memory = PassageIndex(build_instance_memory(knowledge_base.train, tokenizer))
        model.set_index(memory)
        refresh_index(model)
        train = add_memory_index(tokenize_qa_dataset(knowledge_base.train, tokenizer))
        rows = [{key: train[i][key] for key in ("input_ids", "labels", "memory_index")} for i in range(4)]
        return model, EtragDataCollator(0, 0)(rows)

    return build


def test_gradients_reach_query_memory_projection_and_generator(etrag_setup):
    model, batch = etrag_setup(k=2, instances_with_grad=16)
    model.train()
    output = model(**batch)
    assert torch.isfinite(output.loss)
    assert output.retrieved_doc_indices.shape == (4, 2)
    output.loss.backward()
    assert grad_norm(model.query_encoder) > 0
    assert grad_norm(model.doc_encoder) > 0, "re-encoded memory rows carry gradient"
    assert grad_norm(model.objective.prompt_projection) > 0
    assert grad_norm(model.generator) > 0


def test_own_instance_is_never_selected(etrag_setup):
    model, batch = etrag_setup(k=3)
    model.eval()
    query_vectors = model.encode_queries(batch["input_ids"], batch["attention_mask"])
    _, selection, _ = model.objective.select(model, query_vectors, batch["memory_index"])
    own = selection[torch.arange(4), :, batch["memory_index"]]
    assert torch.all(own < 1e-6)
    torch.testing.assert_close(selection.sum(-1), torch.ones(4, 3))


def test_retriever_warmup_blocks_retriever_gradient(etrag_setup):
    model, batch = etrag_setup(k=2, retriever_warmup_steps=5)
    model.train()
    model(**batch).loss.backward()
    assert grad_norm(model.doc_encoder) == 0
    # the query vector is still a soft prompt, so the query encoder learns through the projection
    assert grad_norm(model.objective.prompt_projection) > 0


def test_k_zero_is_the_no_retrieval_baseline(etrag_setup):
    model, batch = etrag_setup(k=0)
    model.train()
    output = model(**batch)
    assert output.retrieved_doc_indices.shape == (4, 0)
    output.loss.backward()
    assert grad_norm(model.doc_encoder) == 0


def test_generation_and_round_trip(tmp_path, etrag_setup, tokenizer):
    model, batch = etrag_setup(k=2)
    sequences = model.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=3)
    assert sequences.shape[0] == 4
    assert all(isinstance(t, str) for t in tokenizer.batch_decode(sequences, skip_special_tokens=True))
    model.eval()
    before = model(**batch).loss
    model.save_pretrained(tmp_path)
    loaded = EtragModel.from_pretrained(tmp_path)
    loaded.set_index(model.index)
    loaded.eval()
    torch.testing.assert_close(loaded(**batch).loss, before)


def test_bad_options_are_rejected(tokenizer):
    with pytest.raises(ValueError, match="`tau` must be > 0"):
        EtragModel(make_config(tokenizer, objective="etrag", objective_kwargs={"tau": 0.0}))
