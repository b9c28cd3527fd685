import pytest
import torch

from hf_etrag.objectives.ops.soft_topk import soft_select, soft_topk


def _separated_scores(batch: int, n: int, seed: int = 0) -> torch.Tensor:
    # Distinct scores at least 1 apart: with tau=1e-4 the gap is 1e4 in logit units, so
    # each softmax is one-hot and the hard top-k is unambiguous.
    g = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(n, generator=g) for _ in range(batch)])
    return perms.float() * 1.5 + 0.1 * torch.rand(batch, n, generator=g)


def test_shape_and_rows_sum_to_one():
    scores = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    D = soft_topk(scores, k=4, temperature=0.5)
    assert D.shape == (3, 4, 10)
    assert torch.all(D >= 0)
    torch.testing.assert_close(D.sum(-1), torch.ones(3, 4), atol=1e-5, rtol=0)


def test_k1_is_plain_softmax():
    scores = torch.randn(2, 7, generator=torch.Generator().manual_seed(1))
    D = soft_topk(scores, k=1, temperature=0.3)
    torch.testing.assert_close(D[:, 0], torch.softmax(scores / 0.3, -1))


def test_second_step_follows_recursion():
    scores = torch.tensor([[1.0, 0.5, -0.2]])
    tau = 0.7
    d1 = torch.softmax(scores / tau, -1)
    d2 = torch.softmax((scores + torch.log(1 - d1)) / tau, -1)
    D = soft_topk(scores, k=2, temperature=tau)
    torch.testing.assert_close(D[:, 0], d1)
    torch.testing.assert_close(D[:, 1], d2)


def test_low_temperature_recovers_hard_topk_in_order():
    scores = _separated_scores(4, 12)
    k = 5
    D = soft_topk(scores, k=k, temperature=1e-4)
    hard = torch.topk(scores, k, dim=-1).indices
    picked = D.argmax(-1)
    assert torch.equal(picked, hard)
    for row in picked:
        assert len(set(row.tolist())) == k
    # One-hot, not merely the right argmax.
    torch.testing.assert_close(D.max(-1).values, torch.ones(4, k), atol=1e-5, rtol=0)


def test_low_temperature_with_exclusion_skips_excluded_entries():
    scores = _separated_scores(3, 10, seed=2)
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[torch.arange(3), scores.argmax(-1)] = True  # exclude the best (e.g. the query itself)
    D = soft_topk(scores, k=3, temperature=1e-4, exclude_mask=mask)
    expected = torch.topk(scores.masked_fill(mask, float("-inf")), 3, dim=-1).indices
    assert torch.equal(D.argmax(-1), expected)


def test_excluded_entries_get_zero_weight():
    scores = torch.randn(2, 8, generator=torch.Generator().manual_seed(3))
    scores[0, 2] = 100.0  # even a dominating score is ignored once excluded
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, 2] = True
    mask[1, [0, 5, 7]] = True
    D = soft_topk(scores, k=4, temperature=1.0, exclude_mask=mask)
    assert D[mask.unsqueeze(1).expand_as(D)].abs().max() < 1e-8
    torch.testing.assert_close(D.sum(-1), torch.ones(2, 4), atol=1e-5, rtol=0)


def _grads(tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    query = torch.randn(2, 16, generator=g, requires_grad=True)
    memory = torch.randn(9, 16, generator=g, requires_grad=True)
    scores = query @ memory.T  # gradient reaches memory via both the scores and soft_select
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[:, 0] = True  # exercise the -inf path in backward too
    r = soft_select(soft_topk(scores, k=3, temperature=tau, exclude_mask=mask), memory)
    assert r.shape == (2, 3, 16)
    (r * torch.randn(r.shape, generator=g)).sum().backward()
    return query.grad, memory.grad


def test_gradients_reach_scores_and_memory():
    query_grad, memory_grad = _grads(tau=0.5)
    for grad in (query_grad, memory_grad):
        assert grad is not None
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0


def test_gradients_stay_finite_when_selection_is_one_hot():
    # At tau=1e-4 every D_i is exactly one-hot, so 1 - D_i == 0 somewhere; without the
    # epsilon floor log(0)'s infinite derivative times softmax's zero Jacobian gives NaN.
    # The query gradient is (correctly) zero here: the selection is saturated.
    query_grad, memory_grad = _grads(tau=1e-4)
    assert torch.isfinite(query_grad).all()
    assert torch.isfinite(memory_grad).all() and memory_grad.abs().sum() > 0


def test_soft_select_shared_and_batched_memory_agree():
    g = torch.Generator().manual_seed(5)
    D = soft_topk(torch.randn(3, 6, generator=g), k=2, temperature=0.2)
    memory = torch.randn(6, 4, generator=g)
    shared = soft_select(D, memory)
    batched = soft_select(D, memory.expand(3, 6, 4))
    torch.testing.assert_close(shared, batched)
    torch.testing.assert_close(shared[1, 0], D[1, 0] @ memory)


def test_half_precision_floor_does_not_underflow():
    scores = _separated_scores(2, 6).half()
    D = soft_topk(scores, k=3, temperature=1e-2)
    assert torch.isfinite(D).all()
    assert torch.equal(D.argmax(-1), torch.topk(scores.float(), 3, -1).indices)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, r"k must be an int >= 1, got k=0"),
        ({"k": 6}, r"k must be <= N .*k=6 with N=5"),
        ({"k": 2.0}, r"k must be an int >= 1, got k=2.0"),
        ({"temperature": 0.0}, r"temperature must be a finite number > 0, got temperature=0.0"),
        ({"temperature": -1.0}, r"temperature=-1.0"),
        ({"temperature": float("inf")}, r"temperature=inf"),
    ],
)
def test_argument_validation(kwargs, match):
    args = {"scores": torch.randn(2, 5), "k": 2, "temperature": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        soft_topk(**args)


def test_too_few_candidates_after_exclusion():
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[1, :3] = True  # row 1 keeps 2 candidates
    with pytest.raises(ValueError, match=r"k=3 .*row 1 has only 2 candidates"):
        soft_topk(torch.randn(2, 5), k=3, temperature=1.0, exclude_mask=mask)
    soft_topk(torch.randn(2, 5), k=2, temperature=1.0, exclude_mask=mask)  # exactly enough is fine


def test_shape_validation():
    with pytest.raises(ValueError, match="scores must be a 2-D"):
        soft_topk(torch.randn(5), k=1, temperature=1.0)
    with pytest.raises(ValueError, match="exclude_mask must have the same shape"):
        soft_topk(torch.randn(2, 5), k=1, temperature=1.0, exclude_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="exclude_mask must be a bool"):
        soft_topk(torch.randn(2, 5), k=1, temperature=1.0, exclude_mask=torch.zeros(2, 5))
    D = soft_topk(torch.randn(2, 5), k=2, temperature=1.0)
    with pytest.raises(ValueError, match="N=4 but D has N=5"):
        soft_select(D, torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"expected B=2 and N=5"):
        soft_select(D, torch.randn(3, 5, 3))
    with pytest.raises(ValueError, match="D must be a 3-D"):
        soft_select(D[:, 0], torch.randn(5, 3))
