import json

import numpy as np
import torch

from hf_etrag import EtragModel, PassageIndex
from hf_etrag.training.arguments import EtragTrainingArguments
from hf_etrag.training.callbacks import IndexRefreshCallback
from hf_etrag.training.trainer import INDEX_FOLDER, EtragTrainer

from ..conftest import make_training_args


def _args(tmp_path, **overrides) -> EtragTrainingArguments:
    return make_training_args(tmp_path, **{"logging_steps": 2, **overrides})


def test_training_step_changes_every_trainable_parameter(tmp_path, model_and_index, qa_train):
    model, index = model_and_index
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    EtragTrainer(model, _args(tmp_path, max_steps=1), index=index, train_dataset=qa_train).train()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    # Position rows beyond the batch's lengths and pad embeddings get no gradient; everything else must move.
    unchanged = [n for n in unchanged if "position" not in n and "token_type" not in n]
    assert not unchanged, f"parameters that did not change: {unchanged[:5]}"


def test_frozen_retriever_does_not_change(tmp_path, model_and_index, qa_train):
    model, index = model_and_index
    model.query_encoder.requires_grad_(False)
    before = {n: p.detach().clone() for n, p in model.query_encoder.named_parameters()}
    EtragTrainer(model, _args(tmp_path, max_steps=2), index=index, train_dataset=qa_train).train()
    assert all(torch.equal(p, before[n]) for n, p in model.query_encoder.named_parameters())


def test_refresh_callback_swaps_the_index_and_logs_staleness(tmp_path, model_and_index, qa_train):
    model, index = model_and_index
    old_embeddings = index.embeddings.copy()
    old_faiss = index.faiss_index
    trainer = EtragTrainer(model, _args(tmp_path, refresh_steps=2), index=index, train_dataset=qa_train)
    assert any(isinstance(cb, IndexRefreshCallback) for cb in trainer.callback_handler.callbacks)
    trainer.train()
    assert index.faiss_index is not old_faiss
    assert index.built_at_step == 4
    assert not np.allclose(index.embeddings, old_embeddings)
    logged = [entry for entry in trainer.state.log_history if "refresh_seconds" in entry]
    assert logged and all(entry["refresh_staleness"] > 0 for entry in logged)
    # the index now answers with the current encoder: re-encoding gives what it stores
    model.eval()
    ids, mask = index.retriever_tokens.batch([0, 1], 0)
    np.testing.assert_allclose(
        model.encode_passages(ids, mask).detach().numpy(), index.embeddings[:2], atol=1e-5
    )


def test_gradient_accumulation_eval_and_checkpoints_with_index(tmp_path, model_and_index, qa_train):
    model, index = model_and_index
    args = _args(
        tmp_path,
        gradient_accumulation_steps=2,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        refresh_steps=2,
    )
    trainer = EtragTrainer(
        model, args, index=index, train_dataset=qa_train, eval_dataset=qa_train.select(range(8))
    )
    trainer.train()
    history = trainer.state.log_history
    train_logs = [h for h in history if "loss" in h]
    eval_logs = [h for h in history if "eval_loss" in h]
    assert train_logs and all(
        k in train_logs[0] for k in ("generator_nll", "retriever_entropy", "gold_in_top_k")
    )
    assert eval_logs and "eval_gold_in_top_k" in eval_logs[0]
    checkpoint = tmp_path / "out" / "checkpoint-4"
    assert (checkpoint / "model.safetensors").is_file()
    assert json.loads((checkpoint / INDEX_FOLDER / "index_metadata.json").read_text())["built_at_step"] == 4
    reloaded = EtragModel.from_pretrained(checkpoint)
    reloaded.set_index(PassageIndex.load(checkpoint / INDEX_FOLDER))
    reloaded.eval()
    model.eval()
    batch = trainer.data_collator([qa_train[i] for i in range(2)])
    batch.pop("gold_passage_index")
    torch.testing.assert_close(reloaded(**batch).loss, model(**batch).loss)


def test_retriever_learning_rate_applies_to_every_encoder(tmp_path, tokenizer, _base_index, qa_train):
    from ..conftest import make_config

    model = EtragModel(make_config(tokenizer, objective="vrag"))
    trainer = EtragTrainer(
        model, _args(tmp_path, learning_rate=1e-3, retriever_learning_rate=1e-5), index=_base_index,
        train_dataset=qa_train,
    )  # fmt: skip
    optimizer = trainer.create_optimizer()
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    for name, parameter in model.named_parameters():
        is_encoder = name.split(".")[0] in ("query_encoder", "doc_encoder") or "posterior_encoder" in name
        assert lr_of[id(parameter)] == (1e-5 if is_encoder else 1e-3), name


def test_refresh_at_epoch_end(tmp_path, model_and_index, qa_train):
    model, index = model_and_index
    subset = qa_train.select(range(8))
    args = _args(tmp_path, max_steps=-1, num_train_epochs=1, refresh_on_epoch_end=True)
    trainer = EtragTrainer(model, args, index=index, train_dataset=subset)
    trainer.train()
    assert index.built_at_step == trainer.state.global_step == 2
