"""ETRAG with decoder-only generators (GPT-2, Llama): soft prompts go in front of the query in the causal
LM's input embeddings, the loss reads the target positions only, and generation continues from them."""

import copy

import pytest
import torch

from hf_etrag import EtragModel, PassageIndex
from hf_etrag.data import EtragDataCollator, add_memory_index, build_instance_memory, tokenize_qa_dataset
from hf_etrag.training.callbacks import refresh_index

from ..conftest import grad_norm, make_config
from ..modeling.test_decoder_only import _causal_config


@pytest.fixture(scope="module")
def instance_data(knowledge_base, tokenizer):
    memory = build_instance_memory(knowledge_base.train, tokenizer)
    train = add_memory_index(tokenize_qa_dataset(knowledge_base.train, tokenizer))
    features = [{key: train[i][key] for key in ("input_ids", "labels", "memory_index")} for i in range(4)]
    # The synthetic questions all have one length: drop words from some, so that padding is exercised.
    for feature, cut in zip(features, (0, 2, 4, 1), strict=True):
        ids = feature["input_ids"]
        feature["input_ids"] = ids[: len(ids) - 1 - cut] + ids[-1:]
    return memory, EtragDataCollator(0, 0)(features)


def _model(tokenizer, memory, kind, k=2, **objective_kwargs):
    torch.manual_seed(0)
    config = make_config(
        tokenizer,
        generator=_causal_config(kind, tokenizer),
        objective="etrag",
        objective_kwargs={"k": k, "tau": 0.5, **objective_kwargs},
    )
    config.doc_encoder = copy.deepcopy(config.query_encoder)
    model = EtragModel(config)
    model.set_index(PassageIndex(memory))
    refresh_index(model)
    return model


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_training_step_reaches_query_memory_projection_and_generator(tokenizer, instance_data, kind):
    memory, batch = instance_data
    model = _model(tokenizer, memory, kind, instances_with_grad=16)
    model.train()
    output = model(**batch)
    assert torch.isfinite(output.loss)
    assert output.retrieved_doc_indices.shape == (4, 2)
    assert not torch.any(output.retrieved_doc_indices == batch["memory_index"].unsqueeze(1))
    output.loss.backward()
    assert grad_norm(model.query_encoder) > 0
    assert grad_norm(model.doc_encoder) > 0, "re-encoded memory rows carry gradient"
    assert grad_norm(model.objective.prompt_projection) > 0
    assert grad_norm(model.generator) > 0


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_loss_is_the_target_nll_after_prompts_and_query(tokenizer, instance_data, kind):
    """The batched loss (rows packed, right-padded) equals scoring each example alone, unpadded: the
    sequence `[prompts; query; target]`, summing -log p over the target positions only."""
    memory, batch = instance_data
    model = _model(tokenizer, memory, kind).eval()
    with torch.no_grad():
        loss = model(**batch).loss
        prompts = model.objective.soft_prompts(model, batch)["prompts"]
        embed = model.generator.get_input_embeddings()
        per_example = []
        for row in range(4):
            query = batch["input_ids"][row, : int(batch["attention_mask"][row].sum())]
            target = batch["labels"][row][batch["labels"][row] != -100]
            sequence = torch.cat([prompts[row], embed(torch.cat([query, target]))]).unsqueeze(0)
            logprobs = torch.log_softmax(model.generator(inputs_embeds=sequence).logits[0].float(), -1)
            start = prompts.shape[1] + len(query) - 1  # the logit at position p predicts token p + 1
            read = logprobs[start : start + len(target)]
            per_example.append(-read.gather(1, target.unsqueeze(1)).sum())
    assert len({int(m.sum()) for m in batch["attention_mask"]}) > 1, "queries of different lengths"
    torch.testing.assert_close(loss, torch.stack(per_example).mean(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_generation_continues_the_training_sequence(tokenizer, instance_data, kind):
    """Greedy generation from left-padded `[prompts; query]` embeddings starts with the token the training
    path ranks first at the first target position, row by row, whatever the query lengths."""
    memory, batch = instance_data
    model = _model(tokenizer, memory, kind).eval()
    sequences = model.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=3)
    assert sequences.shape[0] == 4 and 1 <= sequences.shape[1] <= 3
    assert all(isinstance(t, str) for t in tokenizer.batch_decode(sequences, skip_special_tokens=True))
    with torch.no_grad():
        prompts = model.objective.soft_prompts(model, batch)["prompts"]
        logits = model.objective.generator_logits(model, batch, prompts)
    torch.testing.assert_close(sequences[:, 0], logits[:, 0].argmax(-1))


def test_prefix_constraint_sees_a_start_token_like_encoder_decoder_decoding(tokenizer, instance_data):
    memory, batch = instance_data
    model = _model(tokenizer, memory, "gpt2").eval()
    allowed, eos = 7, tokenizer.sep_token_id
    seen_lengths = []

    def only_seven_then_eos(batch_id: int, ids: torch.Tensor) -> list[int]:
        seen_lengths.append(len(ids))
        return [allowed] if len(ids) < 3 else [eos]

    with torch.no_grad():
        out = model.objective.generate(
            model, batch, max_new_tokens=4, prefix_allowed_tokens_fn=only_seven_then_eos
        )
    assert min(seen_lengths) == 1, "the first call sees one start token and no generated token"
    assert out[:, :2].eq(allowed).all() and out[:, 2].eq(eos).all()
