"""Checkpoints of an [`EtragModel`] whose parts carry PEFT adapters: adapters only, bases reloaded by name.

Layout of such a checkpoint (a local folder or a Hub repo):

    config.json                       EtragConfig, with `adapter_bases` = {part: base model name or path}; a base
                                      loaded from a GGUF file is recorded as {"name_or_path": folder or Hub id,
                                      "gguf_file": file name}
    model.safetensors                 every other weight: the parts without adapters (e.g. a fully trained query
                                      encoder), the objective's own layers (ETRAG's projection, the posterior
                                      encoder of jsa/vrag) and any base weight of an adapted part left trainable
    generator_adapter/                adapter_model.safetensors + adapter_config.json (peft's own format)
    query_encoder_adapter/, doc_encoder_adapter/   likewise, when the encoders carry adapters

The frozen base weights of an adapted part are not written: `from_pretrained` loads them from
`adapter_bases[part]` with the part's saved sub-config (and `gguf_file=` for a GGUF base, whose folder has no
safetensors weights), then puts the adapters back with `PeftModel.from_pretrained`. `<part>_adapter/base_fingerprint.json`
records a fingerprint of the frozen base weights the adapters were trained on
(`hf_etrag.retrieval.fingerprint.weights_fingerprint`); loading or resuming onto a base with other weights (a folder
replaced by a different model of the same shape, a Hub repo updated since) raises `AdapterBaseMismatchError`.
A base that was not loaded from a checkpoint (a warm-started `EncoderDecoderModel`, a model built from a config) has
no name to reload it by: `adapter_bases[part]` is then `""` and its frozen weights go into `model.safetensors`.
`merge_adapters()` folds the adapters into the bases (peft's `merge_and_unload`), after which the model saves and
loads as a plain checkpoint.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from peft import PeftModel, get_peft_model_state_dict, load_peft_weights, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    GenerationConfig,
    PreTrainedModel,
)

from ..modeling.configuration import EtragConfig
from ..retrieval.fingerprint import weights_fingerprint
from .apply import ADAPTER_PARTS, adapter_parts

__all__ = [
    "AdapterBaseMismatchError",
    "EtragAdapterMixin",
    "adapter_base_entry",
    "adapter_base_source",
    "adapter_folder",
    "describe_adapter_base",
    "gguf_file_of",
    "is_adapter_checkpoint",
    "CHECKPOINT_PATTERNS",
]

ADAPTER_WEIGHTS = "adapter_model.safetensors"
BASE_FINGERPRINT = "base_fingerprint.json"
# What a model checkpoint consists of (also what a Hub snapshot of one needs): config, weights, adapter folders.
CHECKPOINT_PATTERNS = [
    "config.json",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "*_adapter/*",
]
_HUB_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "force_download")


class AdapterBaseMismatchError(ValueError):
    """The base model found for an adapter checkpoint is not the one its adapters were trained on."""


def adapter_folder(part: str) -> str:
    return f"{part}_adapter"


def gguf_file_of(config: Any) -> str | None:
    """The GGUF file a model was loaded from, as transformers records it on the model's config
    (`quantization_config = GgufConfig(gguf_file=...)`, kept as a dict once the config was saved); else `None`."""
    quantization = getattr(config, "quantization_config", None)
    if quantization is None:
        return None
    if not isinstance(quantization, dict):
        quantization = quantization.to_dict() if hasattr(quantization, "to_dict") else vars(quantization)
    method = quantization.get("quant_method")
    if str(getattr(method, "value", method)).lower() != "gguf":
        return None
    return quantization.get("gguf_file") or None


def adapter_base_entry(base: PreTrainedModel) -> str | dict[str, str]:
    """What `config.adapter_bases` records for an adapted part's base: its name or path, or
    `{"name_or_path": ..., "gguf_file": ...}` for a base loaded with `from_pretrained(path, gguf_file=...)` (its
    folder holds no `model.safetensors`: the file name is needed to reload it). `""` when it has no name."""
    path = str(base.name_or_path or "")
    gguf_file = gguf_file_of(base.config)
    return {"name_or_path": path, "gguf_file": gguf_file} if path and gguf_file else path


def adapter_base_source(entry: str | dict[str, str] | None) -> tuple[str, str | None]:
    """`(name or path, gguf file or None)` of an `adapter_bases` entry (a string, or a dict for a GGUF base)."""
    if isinstance(entry, dict):
        path = entry.get("name_or_path")
        if not isinstance(path, str):
            raise ValueError(
                f"An `adapter_bases` entry must be a name or path, or {{'name_or_path': ..., 'gguf_file': ...}}; "
                f"got {entry!r}."
            )
        return path, entry.get("gguf_file") or None
    return str(entry or ""), None


def describe_adapter_base(entry: str | dict[str, str] | None) -> str:
    """An `adapter_bases` entry as text (model cards): the path, with the GGUF file when there is one."""
    path, gguf_file = adapter_base_source(entry)
    return f"{path} (gguf_file: {gguf_file})" if path and gguf_file else path


def is_adapter_checkpoint(folder: str | os.PathLike) -> bool:
    """Whether a local checkpoint folder holds adapters (its config names `adapter_bases`)."""
    config_file = Path(folder) / "config.json"
    return config_file.is_file() and bool(json.loads(config_file.read_text()).get("adapter_bases"))


class EtragAdapterMixin:
    """`save_pretrained`/`from_pretrained` for models with adapters, and `merge_adapters`; plain models pass
    straight through to `PreTrainedModel`."""

    config: EtragConfig

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        parts = adapter_parts(self)
        self.config.adapter_bases = {
            name: adapter_base_entry(part.get_base_model()) for name, part in parts.items()
        }
        if not parts:
            super().save_pretrained(save_directory, **kwargs)
            return
        state_dict = kwargs.pop("state_dict", None)
        state_dict = state_dict if state_dict is not None else self.state_dict()
        dropped: set[str] = set()
        for name, part in parts.items():
            adapters, keep_base = _adapter_parameter_names(part), _trainable_base_names(part)
            for key in state_dict:
                inner = key[len(name) + 1 :] if key.startswith(f"{name}.") else None
                if inner is not None and (
                    inner in adapters or (self.config.adapter_bases[name] and inner not in keep_base)
                ):
                    dropped.add(key)
        kept = {key: value for key, value in state_dict.items() if key not in dropped}
        super().save_pretrained(save_directory, state_dict=kept, **kwargs)
        if kwargs.get("is_main_process", True):
            for name, part in parts.items():
                base = adapter_base_source(self.config.adapter_bases[name])[0]
                _save_adapter(part, Path(save_directory) / adapter_folder(name), base)
                if base:  # a named base is reloaded from elsewhere: record which weights it must have
                    _save_base_fingerprint(part, Path(save_directory) / adapter_folder(name), base)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any, **kwargs: Any
    ):
        """`PreTrainedModel.from_pretrained`; on an adapter checkpoint, loads each adapted part's base from
        `config.adapter_bases`, then its adapters. Extra keyword arguments for such a checkpoint: `is_trainable`
        (default `True`: adapters trainable, as every weight of a plain checkpoint is) and any option of the
        bases' own `from_pretrained` (e.g. `dtype`)."""
        config = kwargs.get("config")
        if not isinstance(config, EtragConfig):
            hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
            config = EtragConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        if not config.adapter_bases:
            kwargs.pop("is_trainable", None)
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        if model_args:
            raise TypeError("Positional model arguments are not supported for adapter checkpoints.")
        return _load_adapter_model(cls, pretrained_model_name_or_path, config, kwargs)

    def merge_adapters(self) -> EtragAdapterMixin:
        """Fold every part's adapters into its base (peft's `merge_and_unload`) and drop the PEFT wrappers.

        Afterwards `save_pretrained` writes a plain, full checkpoint that loads without peft or the bases.
        Returns the model.
        """
        for name, part in adapter_parts(self).items():
            setattr(self, name, part.merge_and_unload())
        self.config.adapter_bases = {}
        return self

    def load_adapter_checkpoint(self, folder: str | os.PathLike) -> None:
        """Load an adapter checkpoint's weights into this model, whose parts already carry the same adapters
        (resuming training: the Trainer's own loader knows nothing of the `*_adapter/` folders)."""
        folder = Path(folder)
        saved = EtragConfig.from_pretrained(folder).adapter_bases
        parts = adapter_parts(self)
        if set(saved) != set(parts):
            raise ValueError(
                f"{folder} holds adapters for {sorted(saved)}, but this model carries adapters on {sorted(parts)}; "
                "apply the same PEFT set-up before resuming, or load it with `EtragModel.from_pretrained`."
            )
        for name, part in parts.items():
            _check_base_fingerprint(folder, name, saved[name], _base_tensors(part))
            weights = load_peft_weights(str(folder / adapter_folder(name)))
            result = set_peft_model_state_dict(part, weights, adapter_name=part.active_adapter)
            if result.unexpected_keys:
                raise ValueError(
                    f"{folder / adapter_folder(name)} holds weights this model's `{name}` adapter lacks: "
                    f"{sorted(result.unexpected_keys)[:5]}; the adapter configs differ."
                )
        _load_other_weights(self, folder, saved, trainable=True)


def _adapter_parameter_names(part: PeftModel) -> set[str]:
    """Names (inside `part`) of the adapter parameters: those under a tuner layer's adapter modules
    (`lora_A`, `lora_B`, `ia3_l`, ...) or a `modules_to_save` copy."""
    layer_names = {"modules_to_save"}
    for module in part.modules():
        if isinstance(module, BaseTunerLayer):
            layer_names.update(module.adapter_layer_names)
    return {name for name, _ in part.named_parameters() if layer_names.intersection(name.split("."))}


def _trainable_base_names(part: PeftModel) -> set[str]:
    """Base weights of an adapted part that are still trained (the user unfroze them): saved in full."""
    adapters = _adapter_parameter_names(part)
    return {name for name, p in part.named_parameters() if p.requires_grad and name not in adapters}


def _save_adapter(part: PeftModel, folder: Path, base: str) -> None:
    if len(part.peft_config) != 1:
        raise ValueError(
            f"A part carries several adapters ({sorted(part.peft_config)}); hf-etrag saves one per part. Delete "
            "the others (`delete_adapter`) or merge them first."
        )
    adapter = part.active_adapter
    folder.mkdir(parents=True, exist_ok=True)
    weights = get_peft_model_state_dict(part, adapter_name=adapter)
    # Clone: safetensors refuses tensors that share storage, and adapters are small.
    save_file(
        {k: v.detach().cpu().clone().contiguous() for k, v in weights.items()},
        str(folder / ADAPTER_WEIGHTS),
        metadata={"format": "pt"},
    )
    config = copy.deepcopy(part.peft_config[adapter])
    config.base_model_name_or_path = base
    config.inference_mode = True  # as peft saves it; `is_trainable` decides on load
    config.save_pretrained(str(folder))


def _base_tensors(part: PeftModel) -> list[tuple[str, torch.Tensor]]:
    """The base weights of an adapted part under the names the plain base model gives them: adapter layers and
    `modules_to_save` copies left out, peft's `base_layer` / `original_module` wrappers taken off the names."""
    adapters = _adapter_parameter_names(part)
    layer_names = {"modules_to_save"}
    for module in part.modules():
        if isinstance(module, BaseTunerLayer):
            layer_names.update(module.adapter_layer_names)
    tensors = []
    for key, tensor in part.state_dict().items():
        if key in adapters or layer_names.intersection(key.split(".")):
            continue
        name = (
            key.removeprefix("base_model.model.")
            .replace(".base_layer.", ".")
            .replace(".original_module.", ".")
        )
        tensors.append((name, tensor))
    return tensors


def _frozen_base_names(part: PeftModel) -> set[str]:
    """Base weights that train with the adapters (saved in `model.safetensors`): not part of the base's identity."""
    return {
        name.removeprefix("base_model.model.").replace(".base_layer.", ".").replace(".original_module.", ".")
        for name in _trainable_base_names(part)
    }


def _save_base_fingerprint(part: PeftModel, folder: Path, base: str) -> None:
    trained = _frozen_base_names(part)
    tensors = [(name, tensor) for name, tensor in _base_tensors(part) if name not in trained]
    record = {
        "base": base,
        "fingerprint": weights_fingerprint(tensors),
        "trained_base_weights": sorted(trained),
    }
    (folder / BASE_FINGERPRINT).write_text(json.dumps(record, indent=2) + "\n")


def _check_base_fingerprint(
    folder: Path, part: str, entry: str | dict[str, str], tensors: list[tuple[str, torch.Tensor]]
) -> None:
    """Raise `AdapterBaseMismatchError` when `tensors` (the base now found for `part`) are not the weights the
    adapters in `folder` were trained on. Checkpoints saved before the fingerprint was recorded are not checked."""
    record_file = folder / adapter_folder(part) / BASE_FINGERPRINT
    if not record_file.is_file():
        return
    record = json.loads(record_file.read_text())
    trained = set(record.get("trained_base_weights") or [])
    found = weights_fingerprint([(name, tensor) for name, tensor in tensors if name not in trained])
    if found == record.get("fingerprint"):
        return
    base = adapter_base_source(entry)[0] or record.get("base")
    raise AdapterBaseMismatchError(
        f"The {part} base at {base!r} is not the model the adapters in {folder / adapter_folder(part)} were trained "
        f"on: its weights differ (fingerprint {found[:12]}; {record_file.name} records "
        f"{str(record.get('fingerprint'))[:12]} for {record.get('base')!r}), although the shapes may match. The "
        "adapters would run on weights they were never trained with. Put the original base back at that path (or "
        f"set `adapter_bases.{part}` in {folder / 'config.json'} to where it is now), or load a merged checkpoint "
        "(`merge_adapters()` before saving) that does not depend on the base."
    )


def _load_adapter_model(cls: type, name_or_path: str | os.PathLike, config: EtragConfig, kwargs: dict) -> Any:
    kwargs = dict(kwargs)
    kwargs.pop("config", None)
    is_trainable = bool(kwargs.pop("is_trainable", True))
    hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
    unknown = set(config.adapter_bases) - set(ADAPTER_PARTS)
    if unknown:
        raise ValueError(
            f"`adapter_bases` in {name_or_path}/config.json names unknown parts {sorted(unknown)}."
        )
    folder = Path(name_or_path)
    if not folder.is_dir():
        folder = Path(snapshot_download(str(name_or_path), allow_patterns=CHECKPOINT_PATTERNS, **hub_kwargs))
    # A part without a named base is built from its sub-config; its weights come from model.safetensors.
    bases = {
        name: _load_base(config, name, base, kwargs) for name, base in config.adapter_bases.items() if base
    }
    model = cls(config, **bases)
    for name in bases:  # as the model holds them (it drops parts it does not use, such as BERT's pooler)
        _check_base_fingerprint(
            folder, name, config.adapter_bases[name], list(getattr(model, name).state_dict().items())
        )
    for name in config.adapter_bases:
        wrapped = PeftModel.from_pretrained(
            getattr(model, name), str(folder / adapter_folder(name)), is_trainable=is_trainable
        )
        setattr(model, name, wrapped)
    _load_other_weights(model, folder, config.adapter_bases, trainable=is_trainable)
    model.eval()  # as `PreTrainedModel.from_pretrained` returns it
    return model


def _load_base(config: EtragConfig, name: str, entry: str | dict[str, str], kwargs: dict) -> PreTrainedModel:
    # The saved sub-config wins over the base's own (ids set after loading, e.g. pad or decoder start ids).
    sub_config = getattr(config, name)
    base, gguf_file = adapter_base_source(entry)
    # Checkpoints saved before `adapter_bases` named GGUF files still have it in the sub-config's
    # `quantization_config`, which transformers writes when it loads a GGUF file.
    gguf_file = gguf_file or gguf_file_of(sub_config)
    if gguf_file:
        kwargs = {**kwargs, "gguf_file": gguf_file}
    if name == "generator":
        model_class = AutoModelForSeq2SeqLM if config.is_seq2seq_generator else AutoModelForCausalLM
        model = model_class.from_pretrained(base, config=sub_config, **kwargs)
        # A plain checkpoint derives the generation config from the saved sub-config; do the same here.
        model.generation_config = GenerationConfig.from_model_config(sub_config)
        return model
    return AutoModel.from_pretrained(base, config=sub_config, **kwargs)


def _load_other_weights(model: Any, folder: Path, bases: dict[str, str], trainable: bool) -> None:
    """Load `model.safetensors` (or its shards): every weight but the adapted parts' frozen bases and adapters."""
    index_file = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    elif index_file.is_file():
        files = [
            folder / shard for shard in sorted(set(json.loads(index_file.read_text())["weight_map"].values()))
        ]
    else:
        files = []  # every part carries adapters on a named base and the objective has no weights of its own
    state_dict: dict[str, torch.Tensor] = {}
    for file in files:
        state_dict.update(load_file(str(file)))
    result = model.load_state_dict(state_dict, strict=False)
    # Tied weights (BART's shared embeddings) are saved under one name; loading it fills every alias.
    parameters = dict(model.named_parameters(remove_duplicate=False))
    loaded = {id(parameters[key]) for key in state_dict if key in parameters}
    allowed = {key for key, parameter in parameters.items() if id(parameter) in loaded}
    for name, part in adapter_parts(model).items():
        names = (
            [n for n, _ in part.state_dict().items()] if bases.get(name) else _adapter_parameter_names(part)
        )
        allowed.update(f"{name}.{inner}" for inner in names)
    missing = [key for key in result.missing_keys if key not in allowed]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{folder} does not match the model: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}. "
            "It was saved from a different configuration."
        )
    if trainable:
        # Weights of a part with a named base are in model.safetensors only because they were trained.
        for key in state_dict:
            if bases.get(key.split(".")[0]):
                model.get_parameter(key).requires_grad_(True)
