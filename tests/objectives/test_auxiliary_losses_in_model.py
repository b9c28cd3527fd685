"""Retriever co-training losses combined with a generator objective inside `EtragModel.forward`."""

import pytest
import torch

from hf_etrag import EtragModel

from ..conftest import first_batch, make_config


def test_weighted_auxiliary_losses_are_added_and_logged(tokenizer, _base_index, qa_train):
    weights = {"emdr2": 0.5, "pdist": 1.0, "lsr": 0.25, "contrastive": 2.0}
    torch.manual_seed(0)
    model = EtragModel(make_config(tokenizer, auxiliary_losses=weights))
    model.set_index(_base_index)
    model.train()
    output = model(**first_batch(qa_train, n=4))
    terms = output.loss_terms
    assert {"emdr2_loss", "pdist_loss", "lsr_loss", "contrastive_loss", "generator_nll"} <= set(terms)
    expected = terms["generator_nll"] + sum(weights[name] * terms[f"{name}_loss"] for name in weights)
    torch.testing.assert_close(output.loss.detach(), expected)
    assert terms["contrastive_loss"] > 0, "the batch names gold passages, so the contrastive term is active"
    output.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.query_encoder.parameters())


def test_contrastive_loss_without_gold_passages_is_zero(tokenizer, _base_index, qa_train):
    model = EtragModel(make_config(tokenizer, auxiliary_losses={"contrastive": 1.0}))
    model.set_index(_base_index)
    batch = first_batch(qa_train, n=2)
    batch["gold_passage_index"] = torch.full_like(batch["gold_passage_index"], -1)
    assert model(**batch).loss_terms["contrastive_loss"] == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auxiliary_losses": {"emdr3": 1.0}}, "`auxiliary_losses` names 'emdr3', which is unknown"),
        ({"auxiliary_losses": {"pdist": -1.0}}, "must be a finite weight >= 0"),
        (
            {"auxiliary_losses": {"pdist": 1.0}, "auxiliary_loss_kwargs": {"lsr": {"beta": 2.0}}},
            "has options for \\['lsr'\\]",
        ),
    ],
)
def test_bad_auxiliary_settings_are_rejected(tokenizer, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config(tokenizer, **overrides)


def test_auxiliary_options_reach_the_loss(tokenizer):
    model = EtragModel(
        make_config(
            tokenizer, auxiliary_losses={"pdist": 1.0}, auxiliary_loss_kwargs={"pdist": {"temperature": 0.1}}
        )
    )
    assert model.auxiliary_losses["pdist"].get_config_dict()["temperature"] == 0.1
