"""Length-bucketed generator calls: the `B*K` contexts scored in a few calls, each padded to its own longest row,
give the loss and gradients of one call padded to the batch's longest (tolerance: float32 rounding, 1e-5)."""

import copy

import numpy as np
import pytest
import torch

from hf_etrag import EtragModel
from hf_etrag.modeling.contexts import length_buckets
from hf_etrag.retrieval.token_store import TokenStore

from ..conftest import first_batch, make_config
from .test_decoder_only import _causal_config


def test_buckets_cover_every_row_once_and_pad_less():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 300, size=40)
    groups = length_buckets(lengths, max_buckets=4)
    assert 1 < len(groups) <= 4
    assert sorted(np.concatenate(groups).tolist()) == list(range(40))
    area = sum(len(g) * lengths[g].max() for g in groups)
    assert area < len(lengths) * lengths.max()
    # longest group first, and no row of a later group is longer than any row of an earlier one
    assert all(lengths[a].min() >= lengths[b].max() for a, b in zip(groups, groups[1:]))


def test_one_bucket_and_equal_lengths_make_one_call():
    assert len(length_buckets(np.array([5, 9, 7]), max_buckets=1)) == 1
    assert len(length_buckets(np.full(12, 64), max_buckets=4)) == 1


def test_widths_round_up_to_the_pad_multiple():
    lengths = np.array([100, 101, 60, 61, 62, 10])
    groups = length_buckets(lengths, max_buckets=3, pad_multiple=64)
    # 100 and 101 round to 128; 60-62 to 64; 10 to 64: the 64-wide rows share one call
    assert [sorted(lengths[g].tolist()) for g in groups] == [[100, 101], [10, 60, 61, 62]]


def _index_of_varied_lengths(index):
    """The tiny corpus's passages are all about as long; cut them to lengths from 4 to 26 tokens."""
    varied = copy.copy(index)
    varied.generator_tokens = TokenStore.from_lists(
        [index.generator_tokens[row][: 4 + (row * 7) % 23].tolist() for row in range(len(index))]
    )
    return varied


def _loss_and_gradients(model: EtragModel, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("generator", ["bart", "llama"])
@pytest.mark.parametrize("objective", ["rag_sequence", "rag_token"])
def test_bucketed_steps_match_one_padded_call(tokenizer, _base_index, qa_train, generator, objective):
    torch.manual_seed(0)
    overrides = {} if generator == "bart" else {"generator": _causal_config("llama", tokenizer)}
    model = EtragModel(make_config(tokenizer, objective=objective, generator_length_buckets=1, **overrides))
    model.set_index(_index_of_varied_lengths(_base_index))
    model.eval()  # no dropout: the two passes must see the same function
    batch = first_batch(qa_train, n=4)
    # passages given, not searched: rows 0..B*K-1, cut to lengths from 4 to 26 tokens
    batch["doc_indices"] = torch.arange(4 * model.config.n_docs).view(4, -1)
    _, mask = model._host_contexts(batch["input_ids"], batch["attention_mask"], batch["doc_indices"])
    assert len(length_buckets(mask.sum(-1).numpy(), 4)) > 1  # the batch really is split

    plain_loss, plain_grads = _loss_and_gradients(model, batch)
    bucketed = copy.deepcopy(model)
    bucketed.config.generator_length_buckets = 4
    bucketed_loss, bucketed_grads = _loss_and_gradients(bucketed, batch)

    torch.testing.assert_close(bucketed_loss, plain_loss, rtol=1e-5, atol=1e-5)
    assert plain_grads.keys() == bucketed_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        torch.testing.assert_close(bucketed_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_pad_multiple_gives_the_same_loss(tokenizer, _base_index, qa_train):
    torch.manual_seed(0)
    model = EtragModel(make_config(tokenizer, objective="rag_sequence"))
    model.set_index(_base_index)
    model.eval()
    batch = first_batch(qa_train, n=4)
    plain = model(**batch).loss
    model.config.context_pad_multiple = 64
    ids, _ = model._host_contexts(
        batch["input_ids"], batch["attention_mask"], model.retrieve(model.encode_queries(batch["input_ids"], batch["attention_mask"]))
    )
    assert ids.shape[1] % 64 == 0
    torch.testing.assert_close(model(**batch).loss, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_bucket_settings_are_checked(tokenizer, value):
    with pytest.raises(ValueError, match="generator_length_buckets"):
        make_config(tokenizer, generator_length_buckets=value)
