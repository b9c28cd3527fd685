"""JSA-RAG and VRAG: the posterior retriever is trained, the sampler takes no gradient from the generator,
and inference uses the prior alone."""

import pytest
import torch

from hf_etrag import EtragModel
from hf_etrag.objectives.posterior import _mask_duplicates

from ..conftest import first_batch, grad_norm, make_config


def _model(tokenizer, index, objective, **objective_kwargs):
    torch.manual_seed(0)
    model = EtragModel(make_config(tokenizer, objective=objective, objective_kwargs=objective_kwargs))
    model.set_index(index)
    model.train()
    return model


@pytest.mark.parametrize("objective", ["jsa", "vrag"])
def test_loss_is_finite_and_trains_generator_prior_and_posterior(tokenizer, _base_index, qa_train, objective):
    model = _model(tokenizer, _base_index, objective)
    batch = first_batch(qa_train, n=4)
    output = model(**batch)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    assert grad_norm(model.generator) > 0
    assert grad_norm(model.query_encoder) > 0, "the prior retriever is trained"
    assert grad_norm(model.objective.posterior_encoder) > 0, "the posterior retriever is trained"
    # candidates are the union of prior and posterior top-n
    assert output.retrieved_doc_indices.shape == (4, 2 * model.config.n_docs)


def test_jsa_logs_acceptance_rate_and_its_terms(tokenizer, _base_index, qa_train):
    model = _model(tokenizer, _base_index, "jsa", mis_steps=5)
    terms = model(**first_batch(qa_train, n=4)).loss_terms
    assert 0.0 <= float(terms["jsa_acceptance_rate"]) <= 1.0
    assert {"generator_nll", "prior_nll", "posterior_nll"} <= set(terms)


def test_jsa_sampler_gets_no_gradient_from_generator_scores(tokenizer, _base_index, qa_train, monkeypatch):
    """Everything the sampler sees is detached: the generator's gradient comes only from the weighted
    -log p(y|x,h) term, never through the acceptance decisions."""
    from hf_etrag.objectives import posterior

    seen = {}
    real = posterior.metropolis_independence_sample

    def spy(log_target, log_proposal, **kwargs):
        seen["target"], seen["proposal"] = log_target, log_proposal
        return real(log_target, log_proposal, **kwargs)

    monkeypatch.setattr(posterior, "metropolis_independence_sample", spy)
    model = _model(tokenizer, _base_index, "jsa")
    model(**first_batch(qa_train, n=2))
    assert not seen["target"].requires_grad and not seen["proposal"].requires_grad


def test_vrag_equals_its_formula(tokenizer, _base_index, qa_train):
    model = _model(tokenizer, _base_index, "vrag", beta=0.5)
    batch = first_batch(qa_train, n=3)
    query_vectors = model.encode_queries(batch["input_ids"], batch["attention_mask"])
    scores = model.objective.score_candidates(model, query_vectors, dict(batch, generator_input_ids=None))
    q, valid = scores.posterior_logprobs.exp(), scores.valid
    ll = scores.sequence_logprobs.masked_fill(~valid, 0)
    kl = (q * (scores.posterior_logprobs - scores.prior_logprobs).masked_fill(~valid, 0)).sum(-1)
    expected = (-(q * ll).sum(-1) + 0.5 * kl).mean()
    torch.testing.assert_close(model.objective.loss_from_scores(scores)["loss"], expected)


@pytest.mark.parametrize("objective", ["jsa", "vrag"])
def test_inference_uses_the_prior_retriever_only(tokenizer, _base_index, qa_train, objective):
    model = _model(tokenizer, _base_index, objective)
    model.eval()
    batch = first_batch(qa_train, n=2)
    # wreck the posterior encoder: retrieval and generation without labels must not change
    before = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    generated = model.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=3)
    with torch.no_grad():
        for parameter in model.objective.posterior_encoder.parameters():
            parameter.normal_()
    after = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert torch.equal(before.retrieved_doc_indices, after.retrieved_doc_indices)
    assert torch.equal(
        generated, model.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=3)
    )


def test_posterior_encoder_is_saved_and_restored(tmp_path, tokenizer, _base_index, qa_train):
    model = _model(tokenizer, _base_index, "vrag")
    with torch.no_grad():
        next(model.objective.posterior_encoder.parameters()).add_(1.0)
    model.save_pretrained(tmp_path)
    loaded = EtragModel.from_pretrained(tmp_path)
    for (name, ours), (_, theirs) in zip(
        model.objective.posterior_encoder.state_dict().items(),
        loaded.objective.posterior_encoder.state_dict().items(),
        strict=True,
    ):
        assert torch.equal(ours, theirs), name


def test_duplicate_candidates_are_masked():
    indices = torch.tensor([[4, 7, 4, 2, 7]])
    assert _mask_duplicates(indices).tolist() == [[True, True, False, True, False]]


def test_bad_options_are_rejected(tokenizer):
    with pytest.raises(ValueError, match="`mis_steps` must be >= 1"):
        EtragModel(make_config(tokenizer, objective="jsa", objective_kwargs={"mis_steps": 0}))
    with pytest.raises(ValueError, match="`auxiliary_losses` combine with the top-K objectives"):
        EtragModel(make_config(tokenizer, objective="vrag", auxiliary_losses={"pdist": 1.0}))
