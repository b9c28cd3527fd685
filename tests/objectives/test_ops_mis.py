import math

import pytest
import torch

from hf_etrag.objectives.ops.mis import (
    MISResult,
    exact_posterior,
    log_acceptance_prob,
    metropolis_independence_sample,
)

# Tiny enumerable RAG problems with M = 6 passages: prior p(h|x), likelihood p(y|x,h) and a
# posterior-retriever proposal q(h|x,y) that is deliberately wrong but has full support.
PRIOR_A = torch.tensor([0.30, 0.25, 0.20, 0.10, 0.10, 0.05])
LIK_A = torch.tensor([0.05, 0.10, 0.60, 0.30, 0.90, 0.20])
PROP_A = torch.tensor([0.10, 0.30, 0.10, 0.20, 0.15, 0.15])
PRIOR_B = torch.full((6,), 1 / 6)
LIK_B = torch.tensor([0.90, 0.05, 0.05, 0.40, 0.10, 0.50])
PROP_B = torch.tensor([0.20, 0.20, 0.20, 0.20, 0.10, 0.10])


def _tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * (p - q).abs().sum().item()


def test_empirical_distribution_converges_to_exact_posterior():
    chains, steps = 128, 800
    # Two different problems in one batch, so the vectorisation over B is checked as well.
    log_target = torch.cat(
        [(PRIOR_A.log() + LIK_A.log()).expand(chains, 6), (PRIOR_B.log() + LIK_B.log()).expand(chains, 6)]
    )
    log_proposal = torch.cat([PROP_A.log().expand(chains, 6), PROP_B.log().expand(chains, 6)])
    posterior = exact_posterior(log_target)
    # Sanity: the proposal really differs from the posterior (q/pi ranges from 0.24 to 4.3).
    assert _tv(PROP_A, posterior[0]) > 0.3 and _tv(PROP_B, posterior[-1]) > 0.2

    res = metropolis_independence_sample(
        log_target, log_proposal, steps, generator=torch.Generator().manual_seed(1234)
    )
    weights = res.sample_weights(6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2 * chains))
    # Tolerance: Monte Carlo error of a frequency estimate is ~ sqrt(M / N_eff). Here
    # N = 128 * 800 ~ 1e5 states per problem, and the autocorrelation of an independence
    # sampler with min q/pi ~ 0.24 shrinks N_eff a few-fold: measured TV is 0.005 on average
    # and at most 0.0125 over 100 seeds. 0.02 keeps a wide margin yet catches real bias:
    # dropping q from the acceptance ratio gives TV ~ 0.14, sampling q itself TV > 0.3.
    assert _tv(weights[:chains].mean(0), posterior[0]) < 0.02
    assert _tv(weights[chains:].mean(0), posterior[-1]) < 0.02


def test_proposal_equal_to_posterior_always_accepts():
    log_post = torch.log(exact_posterior((PRIOR_A.log() + LIK_A.log()).expand(64, 6)))
    # q == pi exactly: every importance weight is equal, the ratio is exactly 1.
    res = metropolis_independence_sample(log_post, log_post, 500, generator=torch.Generator().manual_seed(0))
    assert res.acceptance_rate.item() == 1.0 and res.accepted.all()
    # Unnormalised target (pi up to a constant) with q its normalisation; float64 so that
    # rounding of the constant stays ~1e-16, far below the resolution of the uniforms.
    log_target = (PRIOR_B.log() + LIK_B.log()).double().expand(64, 6) + 3.7
    log_q = torch.log_softmax(log_target, -1)
    res = metropolis_independence_sample(log_target, log_q, 500, generator=torch.Generator().manual_seed(1))
    assert res.acceptance_rate.item() == 1.0


def test_two_candidate_acceptance_probability_by_hand():
    # Unnormalised target pi~ = (2, 6), i.e. pi = (1/4, 3/4); proposal q = (3/4, 1/4).
    # Importance weights w = pi~/q: w0 = 2 / (3/4) = 8/3, w1 = 6 / (1/4) = 24.
    #   alpha(0 -> 1) = min(1, w1/w0) = min(1, 24 * 3/8) = min(1, 9) = 1
    #   alpha(1 -> 0) = min(1, w0/w1) = (8/3) / 24 = 1/9
    #   alpha(h -> h) = 1
    # Detailed balance: pi(0) q(1) alpha(0->1) = 1/4 * 1/4 * 1 = 1/16
    #                   pi(1) q(0) alpha(1->0) = 3/4 * 3/4 * 1/9 = 1/16.
    lt = torch.log(torch.tensor([[2.0, 6.0]])).expand(3, 2)
    lq = torch.log(torch.tensor([[0.75, 0.25]])).expand(3, 2)
    got = log_acceptance_prob(lt, lq, current=torch.tensor([0, 1, 1]), proposed=torch.tensor([1, 0, 1]))
    torch.testing.assert_close(
        got, torch.tensor([0.0, math.log(1 / 9), 0.0], dtype=torch.float64), atol=1e-7, rtol=0
    )

    # The sampler obeys the same rule. One step from h = 1 accepts with probability
    # q(1) * 1 + q(0) * 1/9 = 1/4 + 1/12 = 1/3 and lands on 0 with probability 1/12;
    # from h = 0 every proposal is accepted.
    n = 40_000  # binomial std: sqrt(1/12 * 11/12 / n) = 0.0014, sqrt(2/9 / n) = 0.0024
    gen = torch.Generator().manual_seed(7)
    res = metropolis_independence_sample(
        lt[:1].expand(n, 2), lq[:1].expand(n, 2), 1, generator=gen, init=torch.ones(n, dtype=torch.long)
    )
    assert abs(res.acceptance_rate.item() - 1 / 3) < 0.01
    assert abs((res.samples[:, 0] == 0).float().mean().item() - 1 / 12) < 0.006
    assert (res.samples[~res.accepted[:, 0], 0] == 1).all()  # a rejection keeps the state
    res0 = metropolis_independence_sample(
        lt[:1].expand(n, 2), lq[:1].expand(n, 2), 1, generator=gen, init=torch.zeros(n, dtype=torch.long)
    )
    assert res0.acceptance_rate.item() == 1.0


def test_no_gradient_in_result_even_if_inputs_require_grad():
    log_target = (PRIOR_A.log() + LIK_A.log()).expand(4, 6).clone().requires_grad_(True)
    log_proposal = PROP_A.log().expand(4, 6).clone().requires_grad_(True)
    with torch.enable_grad():
        res = metropolis_independence_sample(
            log_target, log_proposal, 10, generator=torch.Generator().manual_seed(0)
        )
        weights = res.sample_weights(6)
        acc = log_acceptance_prob(
            log_target, log_proposal, torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
        )
    assert isinstance(res, MISResult)
    for t in (res.samples, res.accepted, res.acceptance_rate, weights, acc):
        assert not t.requires_grad and t.grad_fn is None
    assert res.samples.shape == res.accepted.shape == (4, 10)
    assert res.samples.dtype == torch.long and res.accepted.dtype == torch.bool
    assert res.acceptance_rate.dim() == 0 and res.acceptance_rate.dtype == torch.float32


def test_seed_reproducibility_and_init():
    lt = (PRIOR_A.log() + LIK_A.log()).expand(8, 6)
    lq = PROP_A.log().expand(8, 6)
    a = metropolis_independence_sample(lt, lq, 50, generator=torch.Generator().manual_seed(3))
    b = metropolis_independence_sample(lt, lq, 50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.samples, b.samples) and torch.equal(a.accepted, b.accepted)
    init = torch.arange(8) % 6
    c = metropolis_independence_sample(lt, lq, 1, generator=torch.Generator().manual_seed(3), init=init)
    rejected = ~c.accepted[:, 0]
    assert torch.equal(c.samples[rejected, 0], init[rejected])


def test_zero_mass_candidate_is_left_and_never_revisited():
    lt = torch.log(torch.tensor([[0.0, 1.0, 2.0]])).expand(32, 3)  # candidate 0 impossible
    lq = torch.full((32, 3), math.log(1 / 3))
    res = metropolis_independence_sample(
        lt, lq, 60, generator=torch.Generator().manual_seed(5), init=torch.zeros(32, dtype=torch.long)
    )
    for row in res.samples:
        left = (row != 0).nonzero()
        assert len(left) > 0
        assert (row[int(left[0]) :] != 0).all()


def test_validation_errors():
    lt, lq = torch.zeros(2, 3), torch.full((2, 3), math.log(1 / 3))
    with pytest.raises(ValueError, match=r"log_target must be a 2-D \(B, M\) tensor"):
        metropolis_independence_sample(lt[0], lq[0], 5)
    with pytest.raises(ValueError, match="log_proposal must have the same"):
        metropolis_independence_sample(lt, lq[:, :2], 5)
    with pytest.raises(ValueError, match="num_steps must be an int >= 1, got num_steps=0"):
        metropolis_independence_sample(lt, lq, 0)
    with pytest.raises(ValueError, match="num_steps=2.5"):
        metropolis_independence_sample(lt, lq, 2.5)
    with pytest.raises(ValueError, match="log_target must not contain NaN"):
        metropolis_independence_sample(torch.tensor([[0.0, float("nan"), 0.0]]), lq[:1], 5)
    with pytest.raises(ValueError, match="every row of log_proposal needs at least one finite"):
        metropolis_independence_sample(lt[:1], torch.full((1, 3), float("-inf")), 5)
    with pytest.raises(ValueError, match=r"init must have shape \(B,\)=\(2,\)"):
        metropolis_independence_sample(lt, lq, 5, init=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"init indices must lie in \[0, M=3\)"):
        metropolis_independence_sample(lt, lq, 5, init=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="init must be an integer tensor"):
        metropolis_independence_sample(lt, lq, 5, init=torch.tensor([0.0, 1.0]))
    res = metropolis_independence_sample(
        lt, lq, 5, generator=torch.Generator().manual_seed(0), init=torch.tensor([2, 2])
    )
    with pytest.raises(ValueError, match="num_candidates=2 but the chain visited index 2"):
        res.sample_weights(2)
    with pytest.raises(ValueError, match="num_candidates must be an int >= 1"):
        res.sample_weights(0)
