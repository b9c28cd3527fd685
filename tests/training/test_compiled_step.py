"""`torch_compile` compiles the model's networks in place (not the whole model, whose retrieval runs on the host):
training with it matches the plain run, checkpoints keep their parameter names, and widths rounded to
`context_pad_multiple` leave the loss unchanged. The `eager` backend runs the same dynamo tracing (dynamic shapes)
without code generation, so the test stays fast on the CPU."""

import copy

import torch

from hf_etrag.training.trainer import EtragTrainer

from ..conftest import make_training_args


def _train(tmp_path, model, index, qa_train, **overrides):
    args = make_training_args(tmp_path, max_steps=3, logging_steps=1, **overrides)
    trainer = EtragTrainer(model, args, index=index, train_dataset=qa_train)
    trainer.train()
    return trainer, [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_compiled_parts_train_like_the_plain_model(tmp_path, model_and_index, qa_train):
    torch._dynamo.reset()
    model, index = model_and_index
    model.config.context_pad_multiple = 16
    compiled = copy.deepcopy(model)
    _, plain_losses = _train(tmp_path / "plain", model, index, qa_train)
    trainer, compiled_losses = _train(
        tmp_path / "compiled", compiled, index, qa_train, torch_compile_backend="eager"
    )
    assert compiled.generator._compiled_call_impl is not None  # compiled in place
    assert compiled.query_encoder._compiled_call_impl is not None
    assert not trainer.args.torch_compile  # the Trainer did not wrap the whole model too
    torch.testing.assert_close(torch.tensor(compiled_losses), torch.tensor(plain_losses), rtol=1e-4, atol=1e-5)
    assert compiled.state_dict().keys() == model.state_dict().keys()  # no `_orig_mod.` prefixes
    for (name, p), q in zip(model.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)


def test_fused_adamw_is_the_default_and_trains_like_plain_adamw(tmp_path, model_and_index, qa_train):
    assert make_training_args(tmp_path).optim.value == "adamw_torch_fused"
    model, index = model_and_index
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    plain = copy.deepcopy(model)
    # adam_epsilon 1e-3: Adam divides each gradient by sqrt(v) + eps, which at eps 1e-8 turns the kernels' different
    # rounding of near-zero gradients (rare embedding rows) into full-size, run-to-run different steps; a larger eps
    # keeps those steps proportional to their gradient, so what is compared is the update rule itself.
    _, fused_losses = _train(tmp_path / "fused", model, index, qa_train, adam_epsilon=1e-3)
    _, plain_losses = _train(tmp_path / "plain", plain, index, qa_train, optim="adamw_torch", adam_epsilon=1e-3)
    torch.testing.assert_close(torch.tensor(fused_losses), torch.tensor(plain_losses), rtol=1e-5, atol=1e-6)
    # Compare each tensor's whole update, within 1% (plus 1e-4 for attention key biases, whose gradient is exactly
    # 0 in theory and which move by rounding noise only).
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        fused_update, plain_update = p.detach() - initial[name], q.detach() - initial[name]
        gap = float((fused_update - plain_update).norm())
        assert gap <= 0.01 * float(plain_update.norm()) + 1e-4, (name, gap, float(plain_update.norm()))
