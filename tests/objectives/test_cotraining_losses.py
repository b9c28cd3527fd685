"""Auxiliary retriever co-training losses on tiny hand-checkable tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hf_etrag.objectives.base import ObjectiveInputs
from hf_etrag.objectives.cotraining import (
    AUXILIARY_LOSSES,
    ContrastiveLoss,
    Emdr2Loss,
    LsrLoss,
    PerplexityDistillationLoss,
    build_auxiliary_loss,
    combine_losses,
    contrastive_loss,
    in_batch_passages,
)

LIKELIHOOD_LOSSES = ["emdr2", "pdist", "lsr"]


def _random_inputs(seed: int = 0, b: int = 2, k: int = 3, t: int = 4) -> ObjectiveInputs:
    gen = torch.Generator().manual_seed(seed)
    doc_scores = torch.randn(b, k, generator=gen, requires_grad=True)
    target_logprobs = torch.log_softmax(torch.randn(b, k, t, 5, generator=gen), -1)[..., 0]
    target_logprobs.requires_grad_(True)
    mask = torch.ones(b, t)
    mask[0, -1] = 0
    return ObjectiveInputs(doc_scores, target_logprobs, mask)


def _matched_inputs(probs: list[float], shift: float = 0.0) -> ObjectiveInputs:
    # One target token, so ll_k = log probs[k]; doc_scores = ll + shift gives the same softmax.
    log_p = torch.tensor([probs]).log()
    return ObjectiveInputs(
        (log_p + shift).requires_grad_(True), log_p.unsqueeze(-1).requires_grad_(True), torch.ones(1, 1)
    )


def test_registry_names_and_unknown_name():
    assert set(AUXILIARY_LOSSES) == {"emdr2", "pdist", "lsr", "contrastive"}
    assert isinstance(build_auxiliary_loss("pdist", temperature=2.0), PerplexityDistillationLoss)
    assert build_auxiliary_loss("lsr", gamma=0.5, beta=0.1).get_config_dict() == {"gamma": 0.5, "beta": 0.1}
    for name, cls in AUXILIARY_LOSSES.items():
        assert cls.name == name and cls.citation.startswith("@")
    with pytest.raises(ValueError, match="emdr2"):
        build_auxiliary_loss("nope")


@pytest.mark.parametrize("name", LIKELIHOOD_LOSSES)
def test_finite_and_gradient_only_to_retriever(name):
    inputs = _random_inputs()
    terms = build_auxiliary_loss(name)(inputs)
    assert list(terms) == [f"{name}_loss"]
    loss = terms[f"{name}_loss"]
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert inputs.doc_scores.grad is not None and inputs.doc_scores.grad.abs().sum() > 0
    grad = inputs.target_logprobs.grad
    assert grad is None or torch.all(grad == 0)


def test_emdr2_hand_value_and_mask():
    # p_R = softmax([0, 0]) = [0.5, 0.5]; ll = [log 0.5, log 0.25] (second token masked out, its -100 ignored).
    # loss = -log(0.5 * 0.5 + 0.5 * 0.25) = -log(0.375) ≈ 0.98083
    inputs = ObjectiveInputs(
        torch.zeros(1, 2, requires_grad=True),
        torch.tensor([[[math.log(0.5), -100.0], [math.log(0.25), -100.0]]]),
        torch.tensor([[1.0, 0.0]]),
    )
    loss = Emdr2Loss()(inputs)["emdr2_loss"]
    assert loss.item() == pytest.approx(-math.log(0.375), abs=1e-6)


@pytest.mark.parametrize("name", ["pdist", "lsr"])
def test_kl_zero_when_matched_positive_otherwise(name):
    loss_fn = build_auxiliary_loss(name)
    matched = loss_fn(_matched_inputs([0.2, 0.3, 0.5], shift=7.0))[f"{name}_loss"]
    assert matched.item() == pytest.approx(0.0, abs=1e-6)
    inputs = _matched_inputs([0.2, 0.3, 0.5])
    inputs.doc_scores = torch.zeros(1, 3)
    assert loss_fn(inputs)[f"{name}_loss"].item() > 1e-3


def test_kl_directions_differ():
    # p_R = [0.9, 0.1], LM target = [0.5, 0.5]:
    # pdist = KL(LM || R) = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1) ≈ 0.5108
    # lsr   = KL(R || LM) = 0.9 ln(0.9/0.5) + 0.1 ln(0.1/0.5) ≈ 0.3681
    inputs = ObjectiveInputs(
        torch.tensor([[0.9, 0.1]]).log(), torch.full((1, 2, 1), math.log(0.5)), torch.ones(1, 1)
    )
    pdist = PerplexityDistillationLoss()(inputs)["pdist_loss"].item()
    lsr = LsrLoss()(inputs)["lsr_loss"].item()
    assert pdist == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(5), abs=1e-5)
    assert lsr == pytest.approx(0.9 * math.log(1.8) + 0.1 * math.log(0.2), abs=1e-5)
    assert abs(pdist - lsr) > 0.1


def test_likelihood_losses_validate_inputs():
    inputs = _random_inputs()
    with pytest.raises(ValueError, match="target_mask"):
        Emdr2Loss()(ObjectiveInputs(inputs.doc_scores, inputs.target_logprobs, torch.ones(2, 3)))
    with pytest.raises(ValueError, match="target_logprobs"):
        Emdr2Loss()(ObjectiveInputs(inputs.doc_scores, inputs.target_logprobs[:, :2], inputs.target_mask))
    with pytest.raises(ValueError, match="temperature"):
        PerplexityDistillationLoss(temperature=0.0)
    with pytest.raises(ValueError, match="beta"):
        LsrLoss(beta=-1.0)


def test_contrastive_matches_cross_entropy_and_skips_unknown_rows():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [-1.0, 2.0]])
    loss = contrastive_loss(q, p, torch.tensor([1, -1, 3]), temperature=0.5)
    expected = F.cross_entropy(q[[0, 2]] @ p.T / 0.5, torch.tensor([1, 3]))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    loss.backward()
    assert torch.all(q.grad[1] == 0) and q.grad[0].abs().sum() > 0

    none = contrastive_loss(q, p, torch.tensor([-1, -1, -1]))
    assert none.item() == 0.0 and none.requires_grad
    with pytest.raises(ValueError, match="temperature"):
        contrastive_loss(q, p, torch.tensor([0, 0, 0]), temperature=0.0)
    with pytest.raises(ValueError, match="positive_index"):
        contrastive_loss(q, p, torch.tensor([0, 4, 0]))
    with pytest.raises(ValueError, match="share H"):
        contrastive_loss(q, torch.ones(4, 3), torch.tensor([0, 0, 0]))


def test_combine_losses_weights_and_validation():
    main_loss = torch.tensor(2.0, requires_grad=True)
    aux = torch.tensor(3.0, requires_grad=True)
    main = {"loss": main_loss, "generator_nll": main_loss}
    out = combine_losses(main, {"emdr2": {"emdr2_loss": aux}}, {"emdr2": 0.5})
    assert out["loss"].item() == pytest.approx(3.5)
    assert out["emdr2_loss"].item() == 3.0 and not out["emdr2_loss"].requires_grad
    assert not out["generator_nll"].requires_grad and out["main_loss"].item() == 2.0
    out["loss"].backward()
    assert aux.grad.item() == 0.5 and main_loss.grad.item() == 1.0

    # A zero weight keeps the term for logging but leaves a NaN out of the total.
    nan_out = combine_losses(main, {"lsr": {"lsr_loss": torch.tensor(float("nan"))}}, {"lsr": 0.0})
    assert nan_out["loss"].item() == 2.0
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="emdr2"):
            combine_losses(main, {"emdr2": {"emdr2_loss": aux}}, {"emdr2": bad})
    with pytest.raises(ValueError, match="same losses"):
        combine_losses(main, {"emdr2": {"emdr2_loss": aux}}, {})


def test_auxiliary_losses_share_the_objective_registry_and_call_signature():
    """One registry, one interface: an auxiliary loss is an `AuxiliaryLoss` (a tensor-in objective) registered with
    the training objectives, called with `ObjectiveInputs` like them; it is not selectable as `objective`."""
    import inspect

    from hf_etrag.objectives import AuxiliaryLoss, RetrievalObjective, available_objectives, objective_class
    from hf_etrag.objectives.registry import register_objective

    for name, cls in AUXILIARY_LOSSES.items():
        assert issubclass(cls, AuxiliaryLoss) and issubclass(cls, RetrievalObjective) and cls.auxiliary
        assert list(inspect.signature(cls.forward).parameters) == ["self", "inputs"], name
        assert name not in available_objectives()
        with pytest.raises(ValueError, match="Unknown objective 'pdist'"):
            objective_class("pdist")
    assert not any(objective_class(name).auxiliary for name in available_objectives())
    with pytest.raises(ValueError, match="already registered"):
        register_objective("pdist")(type("Other", (AuxiliaryLoss,), {"forward": lambda self, inputs: {}}))
    with pytest.raises(ValueError, match="already registered"):
        register_objective("rag_sequence")(
            type("Other", (AuxiliaryLoss,), {"forward": lambda self, inputs: {}})
        )


def test_contrastive_reads_the_retrieval_vectors_of_the_inputs():
    """`ContrastiveLoss()(inputs)` is the in-batch-negatives loss over the retrieved passages plus the gold ones,
    at the inputs' temperature; without the vectors it says what is missing."""
    gen = torch.Generator().manual_seed(0)
    queries = torch.randn(3, 4, generator=gen, requires_grad=True)
    doc_vectors, doc_indices = torch.randn(3, 2, 4, generator=gen), torch.tensor([[0, 5], [1, 2], [3, 4]])
    gold = torch.tensor([5, -1, 7])
    gold_vectors = torch.randn(2, 4, generator=gen)
    inputs = ObjectiveInputs(
        torch.zeros(3, 2),
        torch.zeros(3, 2, 1),
        torch.ones(3, 1),
        query_vectors=queries,
        doc_vectors=doc_vectors,
        doc_indices=doc_indices,
        gold_passage_index=gold,
        gold_vectors=gold_vectors,
        temperature=0.5,
    )
    passages, positive, ids = in_batch_passages(doc_vectors, doc_indices, gold, gold_vectors)
    expected = contrastive_loss(queries, passages, positive, temperature=0.5, passage_ids=ids)
    torch.testing.assert_close(ContrastiveLoss()(inputs)["contrastive_loss"], expected)
    assert ContrastiveLoss.reads_gold_passages
    with pytest.raises(ValueError, match="query_vectors"):
        ContrastiveLoss()(_random_inputs())
