"""Loading checkpoints safely: safetensors weights only, never code from a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, PreTrainedModel

__all__ = ["load_generator", "safetensors_only"]


def safetensors_only(kwargs: dict[str, Any], name_or_path: str | os.PathLike) -> dict[str, Any]:
    """`from_pretrained` kwargs that load safetensors weights only, with a clear error where that cannot work."""
    if kwargs.get("trust_remote_code"):
        raise ValueError(
            f"`trust_remote_code=True` was passed for {str(name_or_path)!r}; hf-etrag never runs code from a "
            "checkpoint. Use a model class that transformers ships, and drop `trust_remote_code`."
        )
    if kwargs.get("use_safetensors") is False:
        raise ValueError(
            f"`use_safetensors=False` was passed for {str(name_or_path)!r}; hf-etrag loads safetensors weights only "
            "(pickle files can run code when loaded). Drop the argument and convert the checkpoint once: "
            "`model.save_pretrained(folder)` writes `model.safetensors`."
        )
    folder = Path(name_or_path) / (kwargs.get("subfolder") or "")
    if folder.is_dir() and not list(folder.glob("*.safetensors")) and list(folder.glob("pytorch_model*.bin")):
        raise ValueError(
            f"{folder} holds only pickle weights (pytorch_model*.bin); hf-etrag loads safetensors only (a pickle "
            "can run code when loaded). Convert it once in a trusted environment: load it with transformers and "
            "call `save_pretrained(folder)`, which writes `model.safetensors`."
        )
    return {**kwargs, "use_safetensors": True}


def load_generator(name_or_path: str, **kwargs: Any) -> PreTrainedModel:
    """A seq2seq or causal LM, whichever the checkpoint's config says it is."""
    config = AutoConfig.from_pretrained(name_or_path, **{k: v for k, v in kwargs.items() if k == "gguf_file"})
    model_class = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    return model_class.from_pretrained(name_or_path, **kwargs)
