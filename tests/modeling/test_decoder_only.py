"""Decoder-only generators: the passage and the query form the prompt, the loss covers target tokens only."""

import pytest
import torch
from transformers import GPT2Config, LlamaConfig

from hf_etrag import EtragModel
from hf_etrag.modeling.contexts import target_logprobs

from ..conftest import first_batch, make_config


def _causal_config(kind, tokenizer):
    common = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    if kind == "gpt2":
        return GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=256, **common)
    return LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=256, **common,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("objective", ["rag_sequence", "rag_token", "jsa", "vrag"])
def test_training_step_and_generation(tokenizer, _base_index, qa_train, kind, objective):
    torch.manual_seed(0)
    model = EtragModel(make_config(tokenizer, generator=_causal_config(kind, tokenizer), objective=objective))
    model.set_index(_base_index)
    model.train()
    output = model(**first_batch(qa_train, n=3))
    assert torch.isfinite(output.loss)
    output.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.query_encoder.parameters())
    batch = first_batch(qa_train, n=3)
    sequences = model.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=3)
    assert sequences.shape[0] == 3 and sequences.shape[1] <= 3


def test_causal_scores_read_only_the_target_positions(tokenizer):
    """Scoring a target after a context equals scoring the concatenation token by token."""
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM

    generator = AutoModelForCausalLM.from_config(_causal_config("gpt2", tokenizer)).eval()
    context = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    context_mask = (context != 0).long()
    labels = torch.tensor([[10, 11], [12, -100]])
    logprobs, _ = target_logprobs(generator, context, context_mask, labels, pad_id=0)
    with torch.no_grad():
        full = torch.log_softmax(generator(input_ids=torch.tensor([[5, 6, 7, 10, 11]])).logits, -1)[0]
    torch.testing.assert_close(logprobs[0], torch.stack([full[2, 10], full[3, 11]]), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        full = torch.log_softmax(generator(input_ids=torch.tensor([[8, 9, 12]])).logits, -1)[0]
    torch.testing.assert_close(logprobs[1, 0], full[1, 12], rtol=1e-4, atol=1e-5)
