"""The accelerate configs in `recipes/accelerate/` parse (as YAML and as accelerate's own `ClusterConfig`,
which rejects unknown keys), carry the fields each launcher reads, and the FSDP one wraps the retriever's
and the generator's layers of an `EtragModel`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

from hf_etrag import EtragModel

from ..conftest import make_config
from ..modeling.test_decoder_only import _causal_config

CONFIGS = Path(__file__).resolve().parents[2] / "recipes" / "accelerate"
EXPECTED = {
    "ddp": DistributedType.MULTI_GPU,
    "fsdp": DistributedType.FSDP,
    "deepspeed_zero2": DistributedType.DEEPSPEED,
}


def test_every_config_is_shipped_and_documented():
    assert {path.stem for path in CONFIGS.glob("*.yaml")} == set(EXPECTED)
    guide = (CONFIGS.parent.parent / "docs" / "multi_gpu.md").read_text()  # the README links this guide
    for name in EXPECTED:
        launch = f"accelerate launch --config_file recipes/accelerate/{name}.yaml"
        assert launch in (CONFIGS / f"{name}.yaml").read_text(), (
            f"{name}.yaml: its header names the launch line"
        )
        assert f"recipes/accelerate/{name}.yaml" in guide, f"docs/multi_gpu.md: {name}.yaml is not documented"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_parses_with_the_fields_accelerate_reads(name):
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert raw["compute_environment"] == "LOCAL_MACHINE"
    assert raw["num_machines"] == 1 and raw["machine_rank"] == 0 and raw["num_processes"] >= 2
    assert raw["mixed_precision"] in ("no", "fp16", "bf16") and raw["use_cpu"] is False
    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))  # TypeError on a key accelerate lacks
    assert config.distributed_type == EXPECTED[name]


def test_deepspeed_config_is_zero2_without_offload():
    raw = yaml.safe_load((CONFIGS / "deepspeed_zero2.yaml").read_text())["deepspeed_config"]
    assert raw["zero_stage"] == 2  # parameters unsharded: the refresh encodes as under DDP
    assert raw["offload_optimizer_device"] == raw["offload_param_device"] == "none"
    # The Trainer fills "auto" from its own arguments; a number here would have to match the recipe's.
    assert raw["gradient_accumulation_steps"] == "auto"


@pytest.mark.parametrize(
    "generator, layers",
    [
        ("bart", {"BartEncoderLayer", "BartDecoderLayer"}),
        ("gpt2", {"GPT2Block"}),
        ("llama", {"LlamaDecoderLayer"}),
    ],
)
def test_fsdp_config_wraps_retriever_and_generator_layers(tokenizer, generator, layers):
    raw = yaml.safe_load((CONFIGS / "fsdp.yaml").read_text())["fsdp_config"]
    # FSDP2: the index refresh can gather its parameters outside `forward` (FSDP1 is refused).
    assert raw["fsdp_version"] == 2 and raw["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert "fsdp_transformer_layer_cls_to_wrap" not in raw, "the classes come from the model itself"
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=raw["fsdp_version"],
        auto_wrap_policy=raw["fsdp_auto_wrap_policy"].lower(),
        reshard_after_forward=raw["fsdp_reshard_after_forward"],
        state_dict_type=raw["fsdp_state_dict_type"],
        cpu_ram_efficient_loading=raw["fsdp_cpu_ram_efficient_loading"],
    )
    torch.manual_seed(0)
    overrides = {} if generator == "bart" else {"generator": _causal_config(generator, tokenizer)}
    plugin.set_auto_wrap_policy(EtragModel(make_config(tokenizer, **overrides)))
    wrapped = {cls.__name__ for cls in plugin.auto_wrap_policy.keywords["transformer_layer_cls"]}
    assert {"BertLayer"} | layers <= wrapped
