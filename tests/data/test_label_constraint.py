"""Label-restricted decoding: the token trie, mapping texts back to labels, and constrained generation with
tiny random models on every decoding path (RAG-Sequence, RAG-Token, ETRAG's soft prompts, decoder-only)."""

import json

import pytest
import torch
from transformers import GPT2Config

from hf_etrag import EtragModel, PassageIndex
from hf_etrag.data import (
    EtragDataCollator,
    LabelConstraint,
    add_memory_index,
    build_instance_memory,
    load_relation_extraction,
    restrict_to_labels,
    tokenize_qa_dataset,
    verbalize_labels,
)
from hf_etrag.training.callbacks import refresh_index

from ..conftest import first_batch, make_config

SEMEVAL_LABELS = ["Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Component-Whole(e2,e1)", "Other"]


def test_trie_allows_only_label_continuations():
    constraint = LabelConstraint({"a": (5, 6), "b": (5, 7), "c": (8,)}, eos_token_id=3, pad_token_id=0)
    assert constraint.allowed_next([]) == [5, 8]
    assert constraint.allowed_next([5]) == [6, 7]
    assert constraint.allowed_next([5, 6]) == [3]
    assert constraint.allowed_next([8, 3]) == [0] and constraint.allowed_next([8, 3, 0]) == [0]
    # generate's hook sees the decoder start token (prompt_length 1) or a whole prompt first
    assert constraint.prefix_allowed_tokens_fn(0, torch.tensor([2, 5])) == [6, 7]
    assert constraint.with_prompt_length(3).prefix_allowed_tokens_fn(0, torch.tensor([9, 9, 9, 8])) == [3]
    assert constraint.max_new_tokens == 3
    assert constraint.batch_decode(torch.tensor([[5, 7, 3], [8, 3, 0]])) == ["b", "c"]
    with pytest.raises(
        ValueError, match=r"Generated ids \[5\] are not a complete label.*max_new_tokens >= 3"
    ):
        constraint.decode([5])


def test_label_that_prefixes_another_may_end_or_go_on(tokenizer):
    constraint = LabelConstraint.from_labels(["other", "other person"], tokenizer)
    other = tokenizer("other", add_special_tokens=False)["input_ids"]
    longer = tokenizer("other person", add_special_tokens=False)["input_ids"]
    assert longer[: len(other)] == other
    assert sorted(constraint.allowed_next(other)) == sorted([longer[len(other)], tokenizer.sep_token_id])
    assert constraint.decode(other) == "other" and constraint.decode(longer) == "other person"


def test_labels_that_tokenise_alike_are_rejected(tokenizer):
    with pytest.raises(ValueError, match="'Other' and 'other' tokenise to the same ids"):
        LabelConstraint.from_labels(["Other", "other"], tokenizer)  # the tokenizer lower-cases


def test_constraint_sequences_are_the_training_targets(tmp_path, tokenizer):
    """The trie holds exactly what `tokenize_qa_dataset` trains the generator to produce (before eos)."""
    records = [
        {"id": "s1", "token": ["the", "fire", "caused", "smoke"], "subj_start": 1, "subj_end": 1,
         "obj_start": 3, "obj_end": 3, "relation": "Cause-Effect(e1,e2)"},
        {"id": "s2", "token": ["a", "person", "met", "people"], "subj_start": 1, "subj_end": 1,
         "obj_start": 3, "obj_end": 3, "relation": "Other"},
    ]  # fmt: skip
    (tmp_path / "train.json").write_text(json.dumps(records))
    dataset = load_relation_extraction(tmp_path / "train.json")
    constraint = LabelConstraint.from_labels(verbalize_labels(dataset["label"]), tokenizer)
    targets = tokenize_qa_dataset(dataset, tokenizer)["labels"]
    for label, target in zip(dataset["label"], targets, strict=True):
        assert target == [*constraint.sequences[label], tokenizer.sep_token_id]
        assert constraint.decode(target) == label


def test_restrict_to_labels():
    words = verbalize_labels(SEMEVAL_LABELS)
    assert restrict_to_labels(["effect cause", " Other ", "whole  COMPONENT"], words) == [
        "Cause-Effect(e2,e1)",
        "Other",
        "Component-Whole(e2,e1)",
    ]
    assert restrict_to_labels(["cause effect", "the fire"], words, unmatched="Other") == [
        "Cause-Effect(e1,e2)",
        "Other",
    ]
    with pytest.raises(ValueError, match=r"Text 1 \('the fire'\) is none of the labels' words"):
        restrict_to_labels(["cause effect", "the fire"], words)
    with pytest.raises(ValueError, match="`unmatched='no_relation'` is not one of the labels"):
        restrict_to_labels(["x"], words, unmatched="no_relation")


def _generate(model, batch, constraint, **kwargs):
    return model.generate(
        batch["input_ids"], batch["attention_mask"], max_new_tokens=constraint.max_new_tokens, **kwargs
    )


def _assert_only_labels(sequences, constraint):
    decoded = constraint.batch_decode(sequences)
    assert set(decoded) <= set(SEMEVAL_LABELS)
    return decoded


@pytest.fixture
def semeval_constraint(tokenizer):
    return LabelConstraint.from_labels(verbalize_labels(SEMEVAL_LABELS), tokenizer)


@pytest.mark.parametrize(("decoding", "num_beams"), [("sequence", 1), ("sequence", 2), ("token", 1)])
def test_rag_generation_yields_only_labels(
    model_and_index, qa_train, semeval_constraint, decoding, num_beams
):
    model, _ = model_and_index
    batch = first_batch(qa_train, n=4)
    if num_beams == 1:
        free = _generate(model, batch, semeval_constraint, decoding=decoding)
        with pytest.raises(ValueError, match="not a complete label"):  # the random generator knows no labels
            semeval_constraint.batch_decode(free)
    sequences = _generate(
        model,
        batch,
        semeval_constraint,
        decoding=decoding,
        num_beams=num_beams,
        label_constraint=semeval_constraint,
    )
    assert len(_assert_only_labels(sequences, semeval_constraint)) == 4


def test_decoder_only_rag_sequence_yields_only_labels(tokenizer, _base_index, qa_train, semeval_constraint):
    torch.manual_seed(0)
    generator = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=256,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
    )  # fmt: skip
    model = EtragModel(make_config(tokenizer, generator=generator))
    model.set_index(_base_index)
    sequences = _generate(
        model, first_batch(qa_train, n=3), semeval_constraint, label_constraint=semeval_constraint
    )
    assert len(_assert_only_labels(sequences, semeval_constraint)) == 3


def test_etrag_generation_yields_only_labels(knowledge_base, tokenizer, semeval_constraint):
    torch.manual_seed(0)
    model = EtragModel(make_config(tokenizer, objective="etrag", objective_kwargs={"k": 2, "tau": 0.5}))
    train = knowledge_base.train.select(range(12))
    model.set_index(PassageIndex(build_instance_memory(train, tokenizer)))
    refresh_index(model)
    rows = add_memory_index(tokenize_qa_dataset(train, tokenizer))
    batch = EtragDataCollator(0, 0)([{k: rows[i][k] for k in ("input_ids", "labels")} for i in range(4)])
    with pytest.raises(ValueError, match="not a complete label"):
        semeval_constraint.batch_decode(_generate(model, batch, semeval_constraint))
    sequences = _generate(model, batch, semeval_constraint, label_constraint=semeval_constraint)
    assert len(_assert_only_labels(sequences, semeval_constraint)) == 4


def test_generation_rejects_a_constraint_it_cannot_honour(
    model_and_index, qa_train, tokenizer, semeval_constraint
):
    model, _ = model_and_index
    batch = first_batch(qa_train, n=2)
    with pytest.raises(ValueError, match=rf"use `max_new_tokens={semeval_constraint.max_new_tokens}`"):
        model.generate(
            batch["input_ids"], batch["attention_mask"], max_new_tokens=1, label_constraint=semeval_constraint
        )
    foreign = LabelConstraint({"x": (7,)}, eos_token_id=tokenizer.cls_token_id, pad_token_id=0)
    with pytest.raises(ValueError, match="build it with the generator's tokenizer"):
        _generate(model, batch, foreign, label_constraint=foreign)
