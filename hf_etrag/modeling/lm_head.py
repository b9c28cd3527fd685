"""Target-token log-probabilities straight from the generator's last hidden states, with the LM head applied a chunk
of positions at a time: the `(N, T, V)` logits, their float32 copy and their softmax never exist whole.

`log p(y | h) = h . w_y + b_y - logsumexp(h W^T + b)`; the backward recomputes each chunk's logits instead of
keeping them (one more LM-head matmul, against three `(N, T, V)` tensors of the plain path). Only positions that
hold a target token are computed. Used for generators whose logits are exactly `lm_head(h)` (+ BART's
`final_logits_bias`); others take the plain path.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

__all__ = ["LinearHead", "linear_head", "chunked_target_logprobs"]

# Head classes whose logits are `lm_head(last_hidden_state)`, and whether `final_logits_bias` is added (BART family).
_LINEAR_HEADS = {
    "BartForConditionalGeneration": True,
    "MBartForConditionalGeneration": True,
    "PegasusForConditionalGeneration": True,
    "MarianMTModel": True,
    "BlenderbotForConditionalGeneration": True,
    "LlamaForCausalLM": False,
    "MistralForCausalLM": False,
    "Qwen2ForCausalLM": False,
    "Qwen3ForCausalLM": False,
    "GPT2LMHeadModel": False,
}
# Logit elements per chunk (float32: 32 MiB), e.g. 160 positions of a 50,265-token vocabulary.
_CHUNK_ELEMENTS = 8 * 1024 * 1024


class LinearHead:
    """The parts of a generator with a plain linear LM head: the headless model, the head's weight and bias."""

    def __init__(self, body: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.body, self.weight, self.bias = body, weight, bias


def linear_head(generator: PreTrainedModel) -> LinearHead | None:
    """The generator's body and linear head, or `None` when its logits are not a plain `lm_head(h)` (+ bias)."""
    model = generator.get_base_model() if hasattr(generator, "get_base_model") else generator  # peft wrappers
    with_bias = _LINEAR_HEADS.get(type(model).__name__)
    head = model.get_output_embeddings()
    if with_bias is None or type(head) is not nn.Linear:  # a LoRA-wrapped head is not a plain Linear
        return None
    bias = head.bias
    if with_bias:
        bias = model.final_logits_bias.view(-1) if bias is None else bias + model.final_logits_bias.view(-1)
    return LinearHead(model.base_model, head.weight, bias)


class _TargetLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk):  # noqa: ANN001, ANN205 (autograd signature)
        lse = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        picked = torch.empty_like(lse)
        matmul_weight = weight.to(hidden.dtype)
        for start in range(0, hidden.shape[0], chunk):
            logits = _chunk_logits(hidden[start : start + chunk], matmul_weight, bias)
            lse[start : start + chunk] = torch.logsumexp(logits, dim=-1)
            picked[start : start + chunk] = logits.gather(1, targets[start : start + chunk, None]).squeeze(1)
        ctx.save_for_backward(hidden, weight, bias if bias is not None else torch.empty(0), targets, lse)
        ctx.has_bias, ctx.chunk = bias is not None, chunk
        return picked - lse

    @staticmethod
    def backward(ctx, grad_output):  # noqa: ANN001, ANN205
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        bias = bias if ctx.has_bias else None
        matmul_weight = weight.to(hidden.dtype)
        want_hidden, want_weight, want_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_weight else None
        )
        grad_bias = (
            torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) if want_bias else None
        )
        grad_output = grad_output.float()
        for start in range(0, hidden.shape[0], ctx.chunk):
            rows = slice(start, start + ctx.chunk)
            logits = _chunk_logits(hidden[rows], matmul_weight, bias)
            # d(picked - lse)/d logits = onehot(y) - softmax, times the incoming gradient of each row
            grad_logits = torch.exp(logits - lse[rows, None]).mul_(-grad_output[rows, None])
            grad_logits.scatter_add_(1, targets[rows, None], grad_output[rows, None])
            if grad_bias is not None:
                grad_bias += grad_logits.sum(0)
            grad_logits = grad_logits.to(hidden.dtype)
            if grad_hidden is not None:
                grad_hidden[rows] = grad_logits @ matmul_weight
            if grad_weight is not None:
                grad_weight += (grad_logits.t() @ hidden[rows]).float()
        grad_weight = grad_weight.to(weight.dtype) if grad_weight is not None else None
        grad_bias = grad_bias.to(bias.dtype) if grad_bias is not None else None
        return grad_hidden, grad_weight, grad_bias, None, None


def _chunk_logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    logits = (hidden @ weight.t()).float()
    return logits + bias.float() if bias is not None else logits


def chunked_target_logprobs(
    hidden: torch.Tensor, head: LinearHead, targets: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """`(N, T)` float32 log p(targets | hidden) at the `valid` positions of `(N, T, H)` hidden states (0 elsewhere)."""
    rows = hidden[valid]
    chunk = max(1, _CHUNK_ELEMENTS // head.weight.shape[0])
    picked = _TargetLogprobs.apply(rows, head.weight, head.bias, targets[valid], chunk)
    out = torch.zeros(valid.shape, dtype=torch.float32, device=hidden.device)
    return out.masked_scatter(valid, picked)
