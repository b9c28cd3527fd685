"""Pushing to the Hub and loading back, against the local HTTP stand-in of `tests/hub_server.py`: exactly which
files arrive (and which go through LFS), identical outputs after `from_pretrained(repo_id)`, and the usage snippet
of the pushed model card run as written."""

import re

import numpy as np
import pytest
import torch

from hf_etrag import EtragModel, PassageIndex
from hf_etrag.adapters.apply import PeftArguments, apply_peft
from hf_etrag.modeling.tokenization import EtragTokenizers
from hf_etrag.training.arguments import EtragTrainingArguments
from hf_etrag.training.trainer import EtragTrainer

from ..conftest import first_batch
from ..hub_server import LocalHub, use_local_hub
from ..tiny_checkpoints import model_from_parts, randomize_adapters, save_tiny_parts

INDEX_FILES = {
    "passage_index/corpus/data-00000-of-00001.arrow",
    "passage_index/corpus/dataset_info.json",
    "passage_index/corpus/state.json",
    "passage_index/embeddings.npy",
    "passage_index/index.faiss",
    "passage_index/index_metadata.json",
}
TOKENIZER_FILES = {"retriever_tokenizer/tokenizer.json", "retriever_tokenizer/tokenizer_config.json"}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with LocalHub() as server:
        use_local_hub(monkeypatch, server, tmp_path / "hf-cache")
        yield server
        assert server.unhandled == [], "the client made calls the local hub does not serve"


@torch.no_grad()
def _outputs(model, batch):
    model.eval()
    output = model(**batch)
    return output.loss, output.doc_scores, output.target_logprobs


def test_push_model_with_tokenizers_and_index_then_load_back(hub, model_and_index, tokenizer, qa_train):
    model, index = model_and_index
    batch = first_batch(qa_train, n=3)
    before = _outputs(model, batch)

    model.push_to_hub("tiny-rag", tokenizers=EtragTokenizers(tokenizer), push_index=True)

    repo = hub.repos["tester/tiny-rag"]  # the namespace comes from the Hub, as for a real user
    commit = repo.commits[-1]
    assert (
        set(commit.added) == {"README.md", "config.json", "model.safetensors"} | TOKENIZER_FILES | INDEX_FILES
    )
    assert set(commit.lfs) == {
        "model.safetensors",
        "passage_index/corpus/data-00000-of-00001.arrow",
        "passage_index/embeddings.npy",
    }
    assert set(repo.files) == set(commit.added) | {".gitattributes"}

    reloaded = EtragModel.from_pretrained("tester/tiny-rag")
    reloaded_index = PassageIndex.from_pretrained("tester/tiny-rag")
    np.testing.assert_array_equal(reloaded_index.embeddings, index.embeddings)
    assert reloaded_index.passage_ids == index.passage_ids
    reloaded.set_index(reloaded_index)
    for got, want in zip(_outputs(reloaded, batch), before, strict=True):
        assert torch.equal(got, want)
    tokenizers = EtragTokenizers.from_pretrained("tester/tiny-rag")
    assert tokenizers.shared and tokenizers.retriever.get_vocab() == tokenizer.get_vocab()

    # The card's usage snippet, run as written against the pushed repo.
    card = repo.files["README.md"].data.decode()
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert 'EtragModel.from_pretrained("tester/tiny-rag")' in snippet
    namespace: dict = {}
    exec(compile(snippet, "model-card-usage", "exec"), namespace)
    assert namespace["answer_ids"].shape[0] == 1


def test_trainer_push_sends_adapters_card_and_no_pickles(hub, tmp_path, tokenizer, _base_index, qa_train):
    parts = save_tiny_parts(tmp_path / "bases", tokenizer)
    model = model_from_parts(parts, "bart", _base_index)
    apply_peft(model, PeftArguments(use_peft=True, lora_r=4))
    randomize_adapters(model)
    args = EtragTrainingArguments(
        output_dir=str(tmp_path / "run"),
        hub_model_id="rag-lora",
        max_steps=1,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
    )
    trainer = EtragTrainer(model, args, train_dataset=qa_train, processing_class=EtragTokenizers(tokenizer))
    trainer.train()
    trainer.evaluate(qa_train.select(range(4)))

    trainer.push_to_hub(dataset_name="synthetic-people")

    repo = hub.repos["tester/rag-lora"]
    commit = repo.commits[-1]
    # Adapters only for the LoRA generator; the fully trained query encoder in model.safetensors; no
    # training_args.bin (a pickle), no passage index (not asked for).
    assert (
        set(commit.added)
        == {
            "README.md",
            "config.json",
            "model.safetensors",
            "generator_adapter/adapter_config.json",
            "generator_adapter/adapter_model.safetensors",
            "generator_adapter/base_fingerprint.json",  # the base's weights, checked when it is reloaded
        }
        | TOKENIZER_FILES
    )
    assert (tmp_path / "run" / "training_args.bin").is_file()  # it exists locally, it just stays there
    card = repo.files["README.md"].data.decode()
    assert "synthetic-people" in card and "eval_loss" in card and 'from_pretrained("tester/rag-lora")' in card

    batch = first_batch(qa_train, n=3)
    before = _outputs(model, batch)
    reloaded = EtragModel.from_pretrained("tester/rag-lora")  # the base comes from its recorded path
    reloaded.set_index(_base_index)
    for got, want in zip(_outputs(reloaded, batch), before, strict=True):
        assert torch.equal(got, want)

    # Pushing the merged model to the same repo removes the adapter files the new model does not have.
    model.merge_adapters()
    model.push_to_hub("tester/rag-lora", tokenizers=EtragTokenizers(tokenizer))
    commit = repo.commits[-1]
    assert set(commit.deleted) == {
        "generator_adapter/adapter_config.json",
        "generator_adapter/adapter_model.safetensors",
        "generator_adapter/base_fingerprint.json",
    }
    assert not [path for path in repo.files if path.startswith("generator_adapter/")]
    merged = EtragModel.from_pretrained("tester/rag-lora")
    merged.set_index(_base_index)
    torch.testing.assert_close(_outputs(merged, batch)[2], before[2], rtol=1e-5, atol=1e-5)


def test_push_refuses_a_repo_that_holds_another_model(hub, model_and_index, tokenizer, tmp_path):
    from huggingface_hub import HfApi

    from hf_etrag.atomic import OutputFolderError

    model, _ = model_and_index
    api = HfApi()
    repo_id = api.create_repo("someone-elses-bert").repo_id
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "theirs" / "model.safetensors").write_bytes(b"their weights")
    api.upload_folder(repo_id=repo_id, folder_path=tmp_path / "theirs")
    before = dict(hub.repos[repo_id].files)

    with pytest.raises(OutputFolderError, match="holds a `bert` model .*nothing was sent"):
        model.push_to_hub(repo_id, tokenizers=EtragTokenizers(tokenizer))
    assert hub.repos[repo_id].files == before  # not one file replaced or removed

    # an empty repo, and then our own earlier push, are fine
    model.push_to_hub("fresh-rag", tokenizers=EtragTokenizers(tokenizer))
    model.push_to_hub("fresh-rag", tokenizers=EtragTokenizers(tokenizer))
    assert len(hub.repos["tester/fresh-rag"].commits) >= 2
