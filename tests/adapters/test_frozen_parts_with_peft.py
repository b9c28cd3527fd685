"""A recipe that freezes a part and also puts a trainable PEFT adapter on it is refused before training:
`freeze_generator: true` with `use_peft: true` used to train the generator's LoRA adapter silently."""

from __future__ import annotations

import pytest
import yaml

from hf_etrag.adapters.apply import PeftArguments, adapter_parts, apply_peft, check_peft_arguments
from hf_etrag.cli import main
from hf_etrag.recipes.arguments import ModelArguments
from hf_etrag.recipes.models import set_trainable_parts

from ..tiny_checkpoints import model_from_parts, save_tiny_parts

FROZEN_GENERATOR = r"`freeze_generator: true` and `use_peft: true` contradict each other"


@pytest.fixture(scope="module")
def parts(tmp_path_factory, tokenizer):
    return save_tiny_parts(tmp_path_factory.mktemp("bases"), tokenizer)


def test_check_peft_arguments_names_both_fields_and_the_fix():
    with pytest.raises(ValueError, match=FROZEN_GENERATOR) as error:
        check_peft_arguments(ModelArguments(freeze_generator=True), PeftArguments(use_peft=True))
    assert "set `freeze_generator: false`" in str(error.value) and "`use_peft: false`" in str(error.value)
    with pytest.raises(ValueError, match=r"`freeze_retriever: true` and `peft_on_retriever: query_encoder`"):
        check_peft_arguments(
            ModelArguments(freeze_retriever=True),
            PeftArguments(use_peft=True, peft_on_retriever="query_encoder"),
        )
    # valid: a LoRA reader (with or without a frozen retriever), a frozen reader without PEFT
    check_peft_arguments(ModelArguments(), PeftArguments(use_peft=True))
    check_peft_arguments(ModelArguments(freeze_retriever=True), PeftArguments(use_peft=True))
    check_peft_arguments(ModelArguments(freeze_generator=True), PeftArguments())


def test_apply_peft_refuses_a_generator_the_recipe_froze(parts, _base_index):
    model = model_from_parts(parts, "bart", _base_index)
    set_trainable_parts(model, ModelArguments(freeze_generator=True))
    with pytest.raises(ValueError, match=FROZEN_GENERATOR):
        apply_peft(model, PeftArguments(use_peft=True, lora_r=4))
    assert not adapter_parts(model)  # nothing changed

    model = model_from_parts(parts, "bart", _base_index)
    set_trainable_parts(model, ModelArguments(freeze_retriever=True))
    with pytest.raises(ValueError, match="`freeze_retriever: true` and `peft_on_retriever: encoders`"):
        apply_peft(model, PeftArguments(use_peft=True, lora_r=4, peft_on_retriever="encoders"))
    # the LoRA reader with a frozen retriever: only the generator's adapter trains
    apply_peft(model, PeftArguments(use_peft=True, lora_r=4))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("generator.") and "lora_" in name for name in trainable)


def test_hf_etrag_train_stops_before_training(tmp_path, tiny_open_qa_files, capsys):
    recipe = {
        "task": "open_qa",
        "train_source": tiny_open_qa_files["qa"],
        "corpus_source": tiny_open_qa_files["qa"],
        "retriever_name_or_path": tiny_open_qa_files["bert"],
        "freeze_generator": True,
        "use_peft": True,
        "lora_r": 4,
        "lora_target_modules": ["query", "value"],
        "output_dir": str(tmp_path / "run"),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "freeze_generator" in err and "use_peft" in err and "contradict" in err
    assert not (tmp_path / "run" / "trainer_state.json").exists()
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize(
    "targets, expected",
    [
        (
            ["q_proj"],
            {"q_proj"},
        ),  # one module name: matched by suffix (a plain string would need the full path)
        (["q_proj", "v_proj"], {"q_proj", "v_proj"}),
        (["all-linear"], "all-linear"),
        ([r".*\.q_proj"], r".*\.q_proj"),  # a regex stays a string
    ],
)
def test_lora_target_modules(targets, expected):
    config = PeftArguments(use_peft=True, lora_target_modules=targets).generator_config(is_seq2seq=False)
    assert config.target_modules == expected


def test_the_recipe_parser_refuses_the_contradiction_before_any_model_loads(tmp_path):
    from hf_etrag.recipes.arguments import parse_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "task": "open_qa",
                "train_source": str(tmp_path),
                "corpus_source": str(tmp_path),
                "freeze_generator": True,
                "use_peft": True,
            }
        )
    )
    with pytest.raises(ValueError, match=FROZEN_GENERATOR):
        parse_recipe(str(path), ["--output_dir", str(tmp_path / "run")])
