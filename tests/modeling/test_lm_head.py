"""The chunked LM head (`hf_etrag.modeling.lm_head`): the same target log-probabilities and gradients as the plain
`log_softmax(lm_head(h))` path, within float32 rounding (1e-5), for BART-style and causal generators."""

import copy

import pytest
import torch
from torch import nn

from hf_etrag import EtragModel
from hf_etrag.modeling.lm_head import LinearHead, chunked_target_logprobs, linear_head

from ..conftest import first_batch, make_config
from .test_decoder_only import _causal_config


def test_chunks_match_log_softmax_values_and_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 16, requires_grad=True)
    head = nn.Linear(16, 101, bias=False)
    bias = torch.randn(101, requires_grad=True)
    targets = torch.randint(0, 101, (3, 7))
    valid = torch.rand(3, 7) > 0.3
    weights = torch.randn(3, 7)

    chunked = chunked_target_logprobs(hidden, LinearHead(None, head.weight, bias), targets, valid)
    (chunked * weights).sum().backward()
    got = [t.grad.clone() for t in (hidden, head.weight, bias)]
    for t in (hidden, head.weight, bias):
        t.grad = None
    plain = torch.log_softmax(head(hidden) + bias, -1).gather(-1, targets[..., None]).squeeze(-1) * valid
    (plain * weights).sum().backward()

    torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=1e-5)
    assert bool((chunked[~valid] == 0).all())
    for grad, tensor in zip(got, (hidden, head.weight, bias)):
        torch.testing.assert_close(grad, tensor.grad, rtol=1e-5, atol=1e-5)


def test_only_plain_linear_heads_qualify(tokenizer):
    bart = EtragModel(make_config(tokenizer)).generator
    assert linear_head(bart) is not None
    bert2bert_like = nn.Module()
    bert2bert_like.get_output_embeddings = lambda: nn.Linear(2, 2)  # a class outside the list
    assert linear_head(bert2bert_like) is None


@pytest.mark.parametrize("generator", ["bart", "llama", "gpt2"])
@pytest.mark.parametrize("objective", ["rag_sequence", "rag_token"])
def test_training_loss_and_gradients_match_the_plain_head(tokenizer, _base_index, qa_train, generator, objective):
    torch.manual_seed(0)
    overrides = {} if generator == "bart" else {"generator": _causal_config(generator, tokenizer)}
    model = EtragModel(make_config(tokenizer, objective=objective, chunked_lm_head=False, **overrides))
    model.set_index(_base_index)
    model.eval()
    batch = first_batch(qa_train, n=4)
    chunked = copy.deepcopy(model)
    chunked.config.chunked_lm_head = True
    results = []
    for each in (model, chunked):
        loss = each(**batch).loss
        loss.backward()
        grads = {name: p.grad for name, p in each.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    (plain_loss, plain_grads), (chunked_loss, chunked_grads) = results
    torch.testing.assert_close(chunked_loss, plain_loss, rtol=1e-5, atol=1e-5)
    assert plain_grads.keys() == chunked_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)
