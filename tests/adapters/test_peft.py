"""PEFT adapters: what `apply_peft` wraps and freezes, adapter-only checkpoints that reload to identical outputs,
merging into a plain checkpoint, training that moves only adapters, and resuming from an adapter checkpoint."""

import json

import pytest
import torch
from peft import IA3Config, PeftModel, PromptTuningConfig
from safetensors import safe_open
from transformers import HfArgumentParser

from hf_etrag import EtragModel
from hf_etrag.adapters.apply import PeftArguments, adapter_parts, apply_peft
from hf_etrag.training.arguments import EtragTrainingArguments
from hf_etrag.training.trainer import EtragTrainer

from ..conftest import first_batch
from ..tiny_checkpoints import model_from_parts, randomize_adapters, save_tiny_parts


@pytest.fixture(scope="module")
def parts(tmp_path_factory, tokenizer):
    return save_tiny_parts(tmp_path_factory.mktemp("bases"), tokenizer)


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _tensor_names(file):
    with safe_open(str(file), "pt") as f:
        return list(f.keys())


@torch.no_grad()
def _outputs(model, batch):
    """Retrieval scores (query encoder) and the target's log-probabilities under each passage (generator)."""
    model.eval()
    retrieved = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logprobs, _ = model.target_logprobs_for(retrieved.retrieved_doc_indices, batch)
    return retrieved.doc_scores, logprobs


CASES = {
    # generator, objective, PEFT arguments, files expected besides config.json
    "bart-lora-generator-and-query-encoder": (
        "bart",
        "rag_sequence",
        dict(lora_r=4, peft_on_retriever="query_encoder"),
        ["generator_adapter", "query_encoder_adapter"],
    ),
    # jsa adds a posterior encoder: a trainable non-adapter part, saved in model.safetensors with the query encoder.
    "gpt2-lora-generator-jsa": ("gpt2", "jsa", dict(lora_r=4), ["generator_adapter", "model.safetensors"]),
    "bart-ia3-any-peft-config": (
        "bart",
        "rag_token",
        dict(
            generator_peft_config={
                "peft_type": "IA3",
                "target_modules": ["k_proj", "v_proj", "fc2"],
                "feedforward_modules": ["fc2"],
                "task_type": "SEQ_2_SEQ_LM",
            }
        ),
        ["generator_adapter", "model.safetensors"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_adapter_checkpoint_round_trip(tmp_path, parts, _base_index, qa_train, case):
    generator, objective, peft_kwargs, expected = CASES[case]
    model = model_from_parts(parts, generator, _base_index, objective=objective)
    apply_peft(model, PeftArguments(use_peft=True, **peft_kwargs))
    randomize_adapters(model)
    batch = first_batch(qa_train, n=3)
    before = _outputs(model, batch)

    model.save_pretrained(tmp_path / "ckpt")

    adapted = sorted(adapter_parts(model))
    files = _files(tmp_path / "ckpt")
    expected_files = {"config.json"}
    for entry in expected:
        if entry.endswith(
            "_adapter"
        ):  # the base is named (loaded from a folder): its fingerprint is recorded
            expected_files |= {
                f"{entry}/adapter_config.json",
                f"{entry}/adapter_model.safetensors",
                f"{entry}/base_fingerprint.json",
            }
        else:
            expected_files.add(entry)
    assert set(files) == expected_files
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["adapter_bases"] == {
        name: parts["bert" if name != "generator" else generator] for name in adapted
    }
    for name in adapted:
        folder = tmp_path / "ckpt" / f"{name}_adapter"
        assert (
            json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
            == (config["adapter_bases"][name])
        )
        # adapter weights only: every tensor belongs to an adapter layer, none is a base weight
        names = _tensor_names(folder / "adapter_model.safetensors")
        assert names and all(("lora_" in n) or ("ia3_" in n) for n in names), names[:3]
    if "model.safetensors" in expected:
        names = _tensor_names(tmp_path / "ckpt" / "model.safetensors")
        # no frozen base weight of an adapted part; the fully trained encoder is kept whole
        assert not [n for n in names if n.split(".")[0] in adapted]
        assert any(n.startswith("query_encoder.") for n in names)

    reloaded = EtragModel.from_pretrained(tmp_path / "ckpt")
    reloaded.set_index(_base_index)
    assert sorted(adapter_parts(reloaded)) == adapted
    for got, want in zip(_outputs(reloaded, batch), before, strict=True):
        assert torch.equal(got, want)
    # adapters come back trainable (as every weight of a plain checkpoint is), the bases frozen
    trainable = [n for n, p in reloaded.named_parameters() if p.requires_grad and n.split(".")[0] in adapted]
    assert trainable and all(("lora_" in n) or ("ia3_" in n) for n in trainable)


def test_base_without_a_name_is_saved_with_the_adapters(tmp_path, _base_model, _base_index, qa_train, caplog):
    """A part built from a config cannot be reloaded by name: its frozen weights go into model.safetensors."""
    import copy

    model = copy.deepcopy(_base_model)
    model.set_index(_base_index)
    apply_peft(model, PeftArguments(use_peft=True, lora_r=4))
    assert "no `name_or_path`" in caplog.text
    randomize_adapters(model)
    batch = first_batch(qa_train, n=3)
    before = _outputs(model, batch)
    model.save_pretrained(tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["adapter_bases"] == {"generator": ""}
    names = _tensor_names(tmp_path / "ckpt" / "model.safetensors")
    assert any(n.startswith("generator.base_model.model.model.encoder.layers.0.fc1.weight") for n in names)
    assert not [n for n in names if "lora_" in n]  # the adapters live in generator_adapter/ only
    reloaded = EtragModel.from_pretrained(tmp_path / "ckpt")
    reloaded.set_index(_base_index)
    for got, want in zip(_outputs(reloaded, batch), before, strict=True):
        assert torch.equal(got, want)


def test_merge_adapters_gives_a_plain_checkpoint(tmp_path, parts, _base_index, qa_train):
    model = model_from_parts(parts, "bart", _base_index)
    apply_peft(model, PeftArguments(use_peft=True, lora_r=4, peft_on_retriever=True))
    randomize_adapters(model)
    batch = first_batch(qa_train, n=3)
    scores, logprobs = _outputs(model, batch)
    model.merge_adapters()
    assert not adapter_parts(model) and not isinstance(model.generator, PeftModel)
    merged_scores, merged_logprobs = _outputs(model, batch)
    torch.testing.assert_close(merged_scores, scores, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(merged_logprobs, logprobs, rtol=1e-5, atol=1e-5)
    model.save_pretrained(tmp_path / "merged")
    assert _files(tmp_path / "merged") == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["adapter_bases"] == {}
    reloaded = EtragModel.from_pretrained(tmp_path / "merged")
    reloaded.set_index(_base_index)
    assert torch.equal(_outputs(reloaded, batch)[1], merged_logprobs)


def _args(tmp_path, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        retriever_learning_rate=5e-3,
        max_steps=2,
        save_strategy="steps",
        save_steps=1,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        logging_steps=1,
    )
    kwargs.update(overrides)
    return EtragTrainingArguments(**kwargs)


def test_training_moves_only_adapters_and_resume_restores_them(tmp_path, parts, _base_index, qa_train):
    model = model_from_parts(parts, "bart", _base_index)
    apply_peft(model, PeftArguments(use_peft=True, lora_r=4, peft_on_retriever="query_encoder"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = EtragTrainer(model, _args(tmp_path), train_dataset=qa_train)
    lr_of = {id(p): g["lr"] for g in trainer.create_optimizer().param_groups for p in g["params"]}
    trainer.train()

    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    adapters = {n for n, p in model.named_parameters() if p.requires_grad}
    assert adapters and all("lora_" in n for n in adapters)
    # every adapter weight moved (2 steps: lora_A once lora_B is non-zero), nothing else did
    assert changed == adapters
    # peft-wrapped names still reach the retriever's learning rate
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert lr_of[id(parameter)] == (5e-3 if name.startswith("query_encoder.") else 1e-2), name

    checkpoint = tmp_path / "out" / "checkpoint-1"
    assert {"generator_adapter", "query_encoder_adapter"} <= {p.name for p in checkpoint.iterdir()}
    # both parts carry adapters and rag_sequence has no weights of its own: nothing else to save
    assert not (checkpoint / "model.safetensors").exists()

    # Resuming from step 1 ends where the uninterrupted run did: the adapters (which transformers' own loader
    # would leave freshly initialised) and the optimiser state come back from the adapter checkpoint.
    resumed = model_from_parts(parts, "bart", _base_index)
    apply_peft(resumed, PeftArguments(use_peft=True, lora_r=4, peft_on_retriever="query_encoder"))
    EtragTrainer(resumed, _args(tmp_path), train_dataset=qa_train).train(
        resume_from_checkpoint=str(checkpoint)
    )
    trained = dict(model.named_parameters())
    assert all(torch.equal(p, trained[n]) for n, p in resumed.named_parameters())


def test_peft_arguments_from_the_command_line_and_their_errors(parts, _base_index):
    flags = "--use_peft --lora_r 4 --lora_target_modules q_proj v_proj --peft_on_retriever true".split()
    (args,) = HfArgumentParser(PeftArguments).parse_args_into_dataclasses(flags)
    assert args.retriever_parts == ("query_encoder", "doc_encoder")
    config = args.generator_config(is_seq2seq=True)
    assert (config.r, config.task_type, set(config.target_modules)) == (
        4,
        "SEQ_2_SEQ_LM",
        {"q_proj", "v_proj"},
    )

    with pytest.raises(ValueError, match="`peft_on_retriever` must be one of"):
        PeftArguments(peft_on_retriever="retriever")
    with pytest.raises(ValueError, match="`generator_peft_config` needs a `peft_type`"):
        PeftArguments(generator_peft_config={"r": 8})

    model = model_from_parts(parts, "bart", _base_index)
    with pytest.raises(ValueError, match="shares one encoder"):
        apply_peft(model, None, IA3Config(target_modules=["query"]), encoders=["doc_encoder"])
    with pytest.raises(ValueError, match="virtual tokens"):
        apply_peft(model, PromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=2))
    assert not adapter_parts(model)  # a failed check changes nothing
    model.generator.config.model_type = "my-own-lm"  # unknown to peft's table of default LoRA targets
    with pytest.raises(ValueError, match="set `lora_target_modules`"):
        apply_peft(model, PeftArguments(use_peft=True))


def test_a_base_replaced_by_another_model_of_the_same_shape_is_refused(tmp_path, tokenizer, _base_index):
    """Issue 14, item 3: the adapters loaded silently onto whatever model sat at the recorded base path."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    from hf_etrag.adapters.checkpoint import AdapterBaseMismatchError

    from ..tiny_checkpoints import save_tiny_parts

    parts = save_tiny_parts(tmp_path / "bases", tokenizer)  # own copies: this test overwrites one
    peft = PeftArguments(use_peft=True, lora_r=4, peft_on_retriever="query_encoder")
    model = apply_peft(model_from_parts(parts, "bart", _base_index), peft)
    randomize_adapters(model)
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(adapter_parts(EtragModel.from_pretrained(tmp_path / "ckpt"))) == [
        "generator",
        "query_encoder",
    ]

    torch.manual_seed(99)  # the generator's base folder now holds another BART of the same shape
    AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(parts["bart"])).save_pretrained(
        parts["bart"]
    )
    with pytest.raises(
        AdapterBaseMismatchError,
        match=r"The generator base at '.*bart' is not the model the adapters in .*generator_adapter were trained "
        r"on: its weights differ \(fingerprint \w+; base_fingerprint.json records \w+ for '.*bart'\)",
    ):
        EtragModel.from_pretrained(tmp_path / "ckpt")
    # resuming a Trainer run (whose parts already carry adapters) onto the replaced base is refused too
    resumed = apply_peft(model_from_parts(parts, "bart", _base_index), peft)
    with pytest.raises(AdapterBaseMismatchError, match="is not the model the adapters"):
        resumed.load_adapter_checkpoint(tmp_path / "ckpt")
