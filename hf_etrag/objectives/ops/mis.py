"""Metropolis independence sampler (MIS) over a finite candidate set, for JSA-RAG.

Pure tensor operators; everything here runs without gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["MISResult", "metropolis_independence_sample", "log_acceptance_prob", "exact_posterior"]


@dataclass(frozen=True)
class MISResult:
    """Chain produced by `metropolis_independence_sample`; no tensor requires grad.

    Attributes:
        samples: `(B, T)` long, candidate index of the chain state after each step.
        accepted: `(B, T)` bool, whether the proposal of each step was accepted (a proposal
            equal to the current state counts as accepted).
        acceptance_rate: float32 scalar tensor, mean of `accepted`.
    """

    samples: Tensor
    accepted: Tensor
    acceptance_rate: Tensor

    def sample_weights(self, num_candidates: int, dtype: torch.dtype = torch.float32) -> Tensor:
        r"""Empirical distribution $w_h$ of the chain states: `(B, M)`, each row sums to 1.

        $w_h = \frac{1}{T}\sum_{t=1}^{T} \mathbb{1}[h_t = h]$, the weights of the JSA loss.
        """
        if isinstance(num_candidates, bool) or not isinstance(num_candidates, int) or num_candidates < 1:
            raise ValueError(f"num_candidates must be an int >= 1, got {num_candidates!r}")
        largest = int(self.samples.max())
        if largest >= num_candidates:
            raise ValueError(f"num_candidates={num_candidates} but the chain visited index {largest}")
        batch, steps = self.samples.shape
        counts = torch.zeros(batch, num_candidates, dtype=dtype, device=self.samples.device)
        counts.scatter_add_(1, self.samples, torch.ones(batch, steps, dtype=dtype, device=counts.device))
        return counts / steps


def exact_posterior(log_target: Tensor) -> Tensor:
    r"""Normalised target $\pi(h) = \exp(\log\tilde\pi(h)) / \sum_{h'} \exp(\log\tilde\pi(h'))$.

    `softmax(log_target, -1)`; exact when the candidate set is enumerable. For tests and
    diagnostics of the sampler. `(B, M) -> (B, M)`.
    """
    return torch.softmax(log_target, dim=-1)


def _log_importance_weights(log_target: Tensor, log_proposal: Tensor) -> Tensor:
    # log w(h) = log pi(h) - log q(h). A zero-target candidate gets -inf explicitly, since
    # -inf - (-inf) would be NaN where q(h) is zero too. float64 so that the subtraction
    # adds no float16/bfloat16/float32 rounding to ratios of nearly equal weights.
    lt, lq = log_target.double(), log_proposal.double()
    return torch.where(torch.isneginf(lt), torch.full_like(lt, float("-inf")), lt - lq)


def log_acceptance_prob(
    log_target: Tensor, log_proposal: Tensor, current: Tensor, proposed: Tensor
) -> Tensor:
    r"""$\log \min\left(1, \frac{\pi(h')\, q(h)}{\pi(h)\, q(h')}\right)$ for `(B,)` index tensors.

    Returns a `(B,)` float64 tensor (no gradient). Exposed so that the acceptance rule can be
    checked by hand; `metropolis_independence_sample` uses the same arithmetic.
    """
    with torch.no_grad():
        log_w = _log_importance_weights(log_target.detach(), log_proposal.detach())
        cur = log_w.gather(1, current.view(-1, 1)).squeeze(1)
        new = log_w.gather(1, proposed.view(-1, 1)).squeeze(1)
        return torch.clamp(new - cur, max=0.0)


def _validate(log_target: Tensor, log_proposal: Tensor, num_steps: int, init: Tensor | None) -> None:
    if log_target.dim() != 2:
        raise ValueError(f"log_target must be a 2-D (B, M) tensor, got shape {tuple(log_target.shape)}")
    if log_proposal.shape != log_target.shape:
        raise ValueError(
            f"log_proposal must have the same (B, M) shape as log_target {tuple(log_target.shape)}, "
            f"got {tuple(log_proposal.shape)}"
        )
    if log_target.shape[1] < 1:
        raise ValueError("need at least one candidate (M >= 1)")
    for name, t in (("log_target", log_target), ("log_proposal", log_proposal)):
        if not t.is_floating_point():
            raise ValueError(f"{name} must be floating point, got dtype {t.dtype}")
        if torch.isnan(t).any() or torch.isposinf(t).any():
            raise ValueError(f"{name} must not contain NaN or +inf")
        if t.shape[0] > 0 and not torch.isfinite(t).any(dim=-1).all():
            raise ValueError(f"every row of {name} needs at least one finite entry (non-zero mass)")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1, got num_steps={num_steps!r}")
    if init is not None:
        if init.shape != (log_target.shape[0],):
            raise ValueError(f"init must have shape (B,)=({log_target.shape[0]},), got {tuple(init.shape)}")
        if init.dtype.is_floating_point or init.dtype == torch.bool or init.is_complex():
            raise ValueError(f"init must be an integer tensor of candidate indices, got dtype {init.dtype}")
        if init.numel() and (int(init.min()) < 0 or int(init.max()) >= log_target.shape[1]):
            raise ValueError(f"init indices must lie in [0, M={log_target.shape[1]}), got {init.tolist()}")


def metropolis_independence_sample(
    log_target: Tensor,
    log_proposal: Tensor,
    num_steps: int,
    generator: torch.Generator | None = None,
    init: Tensor | None = None,
) -> MISResult:
    r"""Metropolis independence sampler over a finite set of $M$ candidate passages.

    JSA-RAG samples the latent passage $h$ from the posterior of the RAG model,
    $\pi(h) \propto p_\theta(h \mid x)\, p_\theta(y \mid x, h)$ (prior retriever times
    generator likelihood), using the posterior retriever $q_\phi(h \mid x, y)$ as an
    independence proposal. Each step draws $h' \sim q$ and moves from $h$ to $h'$ with
    probability

    $$\alpha(h \to h') = \min\left(1, \frac{\pi(h')\, q(h)}{\pi(h)\, q(h')}\right),$$

    computed in log space as $\log w(h') - \log w(h)$ with $\log w = \log\pi - \log q$.
    The chain leaves $\pi$ invariant, so the visit frequencies
    (`MISResult.sample_weights`) estimate the posterior.

    Reference: Cao et al. (2025). *JSA-RAG: joint stochastic approximation for
    retrieval-augmented generation*.

    **No gradient:** inputs are detached and everything runs under `torch.no_grad()`; the
    generator and retriever scores carry no gradient into the sampler. The JSA loss
    reweights differentiable log-probs by the returned sample weights instead.

    Args:
        log_target: `(B, M)` $\log\pi(h)$ up to a per-row constant, e.g.
            `log p(h|x) + log p(y|x,h)`; `-inf` marks impossible candidates.
        log_proposal: `(B, M)` normalised log-probs of $q(h \mid x, y)$ (only ratios and a
            categorical draw use it, so a per-row constant does not change the chain).
            Give it full support wherever the target has mass, or the chain is not ergodic.
        num_steps: chain length $T \ge 1$ (one proposal per step).
        generator: optional `torch.Generator` for reproducible draws.
        init: optional `(B,)` integer initial states; default is a draw from $q$.

    Returns:
        `MISResult` with `samples` and `accepted` of shape `(B, T)`.

    Example:
        >>> lt = torch.log(torch.tensor([[0.1, 0.6, 0.3]]))
        >>> lq = torch.log(torch.tensor([[1 / 3, 1 / 3, 1 / 3]]))
        >>> res = metropolis_independence_sample(lt, lq, num_steps=1000,
        ...                                      generator=torch.Generator().manual_seed(0))
        >>> res.sample_weights(3).shape
        torch.Size([1, 3])
    """
    _validate(log_target, log_proposal, num_steps, init)
    with torch.no_grad():
        log_target, log_proposal = log_target.detach(), log_proposal.detach()
        batch, num_candidates = log_target.shape
        device = log_target.device
        log_w = _log_importance_weights(log_target, log_proposal)
        # Proposals do not depend on the chain state (independence sampler), so all of them
        # and all the uniforms are drawn up front; only the accept/reject recursion loops.
        probs = torch.softmax(log_proposal.double(), dim=-1)
        draws = num_steps + (1 if init is None else 0)
        proposals = torch.multinomial(probs, draws, replacement=True, generator=generator)
        if init is None:
            current, proposals = proposals[:, 0], proposals[:, 1:]
        else:
            current = init.to(device=device, dtype=torch.long)
        log_u = torch.log(
            torch.rand(batch, num_steps, dtype=torch.float64, device=device, generator=generator)
        )
        proposal_log_w = log_w.gather(1, proposals)
        current_log_w = log_w.gather(1, current.view(-1, 1)).squeeze(1)

        samples = torch.empty(batch, num_steps, dtype=torch.long, device=device)
        accepted = torch.empty(batch, num_steps, dtype=torch.bool, device=device)
        for t in range(num_steps):
            # u < ratio <=> log u < log ratio; a NaN ratio (both weights -inf) compares
            # False, i.e. reject, which is harmless because neither state has mass.
            acc = log_u[:, t] < proposal_log_w[:, t] - current_log_w
            current = torch.where(acc, proposals[:, t], current)
            current_log_w = torch.where(acc, proposal_log_w[:, t], current_log_w)
            samples[:, t] = current
            accepted[:, t] = acc
        rate = accepted.float().mean() if accepted.numel() else torch.zeros((), device=device)
        return MISResult(samples=samples, accepted=accepted, acceptance_rate=rate)
