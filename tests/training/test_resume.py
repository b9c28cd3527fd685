"""Resuming from a checkpoint continues the run exactly: same losses (bit for bit on CPU), same index.

Run A trains 6 steps uninterrupted, saving checkpoints at steps 3 and 6 and refreshing the index every 2 steps.
Run B starts from a fresh copy of the initial model and an index holding the *initial* embeddings, and resumes
from A's checkpoint-3, whose index was built at step 2. Dropout stays on in the encoders: the Trainer's RNG
restore has to make it replay the same masks. Both ways of scoring passages are run: `train_doc_encoder=True`
re-encodes the retrieved passages (the index decides only which are retrieved), `False` scores them with the
stored embeddings (the loss reads the index directly).
"""

import copy

import numpy as np
import pytest
import torch

from hf_etrag import PassageIndex
from hf_etrag.training.arguments import EtragTrainingArguments
from hf_etrag.training.callbacks import IndexRefreshCallback, refresh_index
from hf_etrag.training.trainer import INDEX_FOLDER, EtragTrainer

STEPS, SAVE_EVERY, REFRESH_EVERY = 6, 3, 2


def _args(output_dir, **overrides) -> EtragTrainingArguments:
    kwargs = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        max_steps=STEPS,
        logging_steps=1,
        save_strategy="steps",
        save_steps=SAVE_EVERY,
        refresh_steps=REFRESH_EVERY,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return EtragTrainingArguments(**kwargs)


def _fresh(base_model, base_index, train_doc_encoder: bool = True):
    """The starting point both runs share: the initial weights and an index with the step-0 embeddings."""
    model = copy.deepcopy(base_model)
    model.config.train_doc_encoder = train_doc_encoder
    return model, PassageIndex(base_index.corpus, embeddings=base_index.embeddings.copy())


def _step_logs(trainer, after: int) -> dict[int, dict]:
    """Per-step training logs after step `after`, without the wall-clock entries (refresh time, speed)."""
    return {
        entry["step"]: {k: v for k, v in entry.items() if k != "refresh_seconds"}
        for entry in trainer.state.log_history
        if "loss" in entry and entry["step"] > after
    }


def _resume(output_dir, uninterrupted, base_model, base_index, qa_train, **args):
    train_doc_encoder = uninterrupted.etrag_model.config.train_doc_encoder
    model, index = _fresh(base_model, base_index, train_doc_encoder)
    trainer = EtragTrainer(model, _args(output_dir, **args), index=index, train_dataset=qa_train)
    trainer.train(resume_from_checkpoint=f"{uninterrupted.args.output_dir}/checkpoint-{SAVE_EVERY}")
    return trainer


@pytest.fixture(scope="module", params=[False, True], ids=["stored_embeddings", "re_encoded"])
def uninterrupted(request, tmp_path_factory, _base_model, _base_index, qa_train):
    model, index = _fresh(_base_model, _base_index, train_doc_encoder=request.param)
    trainer = EtragTrainer(
        model, _args(tmp_path_factory.mktemp("run_a")), index=index, train_dataset=qa_train
    )
    trainer.train()
    return trainer


def test_checkpoint_carries_the_index_and_the_step_it_was_built_at(uninterrupted):
    checkpoint = PassageIndex.load(f"{uninterrupted.args.output_dir}/checkpoint-{SAVE_EVERY}/{INDEX_FOLDER}")
    assert checkpoint.built_at_step == 2  # refreshed at step 2, saved at step 3
    assert uninterrupted.etrag_model.index.built_at_step == STEPS


def test_resumed_run_matches_the_uninterrupted_one_bit_for_bit(
    tmp_path, uninterrupted, _base_model, _base_index, qa_train
):
    resumed = _resume(tmp_path / "run_b", uninterrupted, _base_model, _base_index, qa_train)
    model, index = resumed.etrag_model, resumed.etrag_model.index

    expected, got = _step_logs(uninterrupted, SAVE_EVERY), _step_logs(resumed, SAVE_EVERY)
    assert sorted(got) == list(range(SAVE_EVERY + 1, STEPS + 1))
    for step in got:  # `==` on purpose: loss, every loss term, grad_norm and learning rate, exactly
        assert got[step] == expected[step], f"step {step} differs after resuming"
    np.testing.assert_array_equal(index.embeddings, uninterrupted.etrag_model.index.embeddings)
    assert index.built_at_step == STEPS
    assert all(
        torch.equal(p, q)
        for p, q in zip(model.parameters(), uninterrupted.etrag_model.parameters(), strict=True)
    )
    callback = next(cb for cb in resumed.callback_handler.callbacks if isinstance(cb, IndexRefreshCallback))
    assert callback.last_refresh_step == STEPS


# Scoring with the stored embeddings: a stale index changes the loss directly (with re-encoded passages it
# does only when it changes the top-K), and the remaining checks do not depend on the scoring.
@pytest.mark.parametrize("uninterrupted", [False], ids=["stored_embeddings"], indirect=True)
def test_without_the_saved_index_the_resumed_run_diverges(
    tmp_path, monkeypatch, uninterrupted, _base_model, _base_index, qa_train
):
    """The check above is sensitive to the index: resuming on the step-0 embeddings changes the loss of the
    step before the next refresh (when passages are scored with the stored embeddings)."""
    monkeypatch.setattr(EtragTrainer, "_restore_index", lambda self, checkpoint: None)
    resumed = _resume(tmp_path / "run_c", uninterrupted, _base_model, _base_index, qa_train, max_steps=4)
    expected, got = _step_logs(uninterrupted, SAVE_EVERY), _step_logs(resumed, SAVE_EVERY)
    assert got[SAVE_EVERY + 1]["loss"] != expected[SAVE_EVERY + 1]["loss"]


@pytest.mark.parametrize("uninterrupted", [False], ids=["stored_embeddings"], indirect=True)
def test_resume_with_another_corpus_is_refused(tmp_path, uninterrupted, _base_model, _base_index, qa_train):
    model = copy.deepcopy(_base_model)
    other = PassageIndex(_base_index.corpus.select(range(len(_base_index) - 1)))
    trainer = EtragTrainer(model, _args(tmp_path / "run_d"), index=other, train_dataset=qa_train)
    with pytest.raises(ValueError, match="is not the corpus that .* was trained with"):
        trainer.train(resume_from_checkpoint=f"{uninterrupted.args.output_dir}/checkpoint-{SAVE_EVERY}")


@pytest.mark.parametrize("uninterrupted", [False], ids=["stored_embeddings"], indirect=True)
def test_resume_without_an_index_attaches_the_checkpoints(tmp_path, uninterrupted, _base_model, qa_train):
    model = copy.deepcopy(_base_model)
    trainer = EtragTrainer(
        model, _args(tmp_path / "run_e", max_steps=SAVE_EVERY + 1, refresh_steps=0), train_dataset=qa_train
    )
    trainer.train(resume_from_checkpoint=f"{uninterrupted.args.output_dir}/checkpoint-{SAVE_EVERY}")
    assert model.index.built_at_step == 2 and trainer.state.global_step == SAVE_EVERY + 1


# ---- issue 14: what is resumed must belong together -------------------------------------------------------------


def _resumed_without_steps(output_dir, checkpoint, model, index, qa_train, **args):
    """Resume `checkpoint` (a step-SAVE_EVERY checkpoint) with `max_steps` = its step: the index is restored and
    checked, and no optimiser step runs."""
    trainer = EtragTrainer(
        model, _args(output_dir, max_steps=SAVE_EVERY, **args), index=index, train_dataset=qa_train
    )
    trainer.train(resume_from_checkpoint=str(checkpoint))
    return trainer


@pytest.mark.parametrize("uninterrupted", [False], ids=["stored_embeddings"], indirect=True)
def test_resume_with_changed_passage_texts_rebuilds_the_index(
    tmp_path, caplog, uninterrupted, _base_model, _base_index, qa_train, tokenizer
):
    """Same ids, other texts: the checkpoint's vectors are stale, so they are not adopted; the index is rebuilt
    from the resumed encoder (a warning says why)."""
    from hf_etrag import tokenize_corpus

    checkpoint = f"{uninterrupted.args.output_dir}/checkpoint-{SAVE_EVERY}"
    corpus = _base_index.corpus.remove_columns(["retriever_input_ids"])
    edited = corpus.map(
        lambda row, i: {"text": row["text"] + (" (revised)" if i < 5 else "")}, with_indices=True
    )
    model, _ = _fresh(_base_model, _base_index)
    index = PassageIndex(tokenize_corpus(edited, tokenizer, max_passage_length=48))
    assert index.passage_ids == _base_index.passage_ids
    with caplog.at_level("WARNING"):
        trainer = _resumed_without_steps(tmp_path / "run_f", checkpoint, model, index, qa_train)
    assert "same 72 ids as those" in caplog.text and "other texts or titles" in caplog.text
    assert "The index is rebuilt from the resumed document encoder" in caplog.text
    assert trainer.state.global_step == SAVE_EVERY
    assert index.built_at_step == SAVE_EVERY  # rebuilt at the resume, not the checkpoint's (step 2)
    fresh = PassageIndex(index.corpus)
    model.set_index(fresh)
    refresh_index(model)
    np.testing.assert_array_equal(index.embeddings, fresh.embeddings)


@pytest.mark.parametrize("uninterrupted", [False], ids=["stored_embeddings"], indirect=True)
def test_resume_from_a_checkpoint_whose_index_another_encoder_built_rebuilds_it(
    tmp_path, caplog, uninterrupted, _base_model, _base_index, qa_train
):
    import shutil

    from hf_etrag import EtragModel
    from hf_etrag.retrieval.fingerprint import encoder_fingerprint

    checkpoint = tmp_path / f"checkpoint-{SAVE_EVERY}"
    shutil.copytree(f"{uninterrupted.args.output_dir}/checkpoint-{SAVE_EVERY}", checkpoint)
    torch.manual_seed(7)
    stranger = EtragModel(_base_model.config)  # same shapes, other weights
    foreign = PassageIndex(_base_index.corpus)
    stranger.set_index(foreign)
    refresh_index(stranger, step=SAVE_EVERY)
    shutil.rmtree(checkpoint / INDEX_FOLDER)
    foreign.save(checkpoint / INDEX_FOLDER)  # copied over from another run

    model = copy.deepcopy(_base_model)
    with caplog.at_level("WARNING"):
        trainer = _resumed_without_steps(tmp_path / "run_g", checkpoint, model, None, qa_train)
    assert "does not match its model: its vectors were built by another document encoder" in caplog.text
    index = trainer.etrag_model.index
    assert index.encoder_fingerprint == encoder_fingerprint(model)
    assert not np.array_equal(index.embeddings, foreign.embeddings)


@pytest.mark.parametrize("uninterrupted", [False], ids=["stored_embeddings"], indirect=True)
@pytest.mark.parametrize("value", [True, "true", "latest", "LATEST"])
def test_resume_from_latest_picks_the_newest_complete_checkpoint(
    tmp_path, uninterrupted, _base_model, _base_index, qa_train, value
):
    import shutil

    from hf_etrag.training.checkpoints import IN_PROGRESS_MARKER

    run = tmp_path / "run"
    shutil.copytree(uninterrupted.args.output_dir, run, ignore=shutil.ignore_patterns("checkpoint-6"))
    partial = run / "checkpoint-5"  # an interrupted save: weights written, no trainer_state.json
    partial.mkdir()
    (partial / IN_PROGRESS_MARKER).write_text('{"pid": 999999999, "host": "elsewhere"}')
    shutil.copy(run / "checkpoint-3" / "model.safetensors", partial / "model.safetensors")
    model, index = _fresh(_base_model, _base_index)
    trainer = EtragTrainer(model, _args(run, max_steps=SAVE_EVERY + 1), index=index, train_dataset=qa_train)
    trainer.train(resume_from_checkpoint=value)
    assert (
        trainer.state.global_step == SAVE_EVERY + 1
    )  # resumed from checkpoint-3, not the partial checkpoint-5
    assert not partial.exists(), "the interrupted save is cleaned up at the start"
    assert (run / "checkpoint-3").is_dir() and (run / "checkpoint-4").is_dir()


@pytest.mark.parametrize("uninterrupted", [False], ids=["stored_embeddings"], indirect=True)
def test_resuming_a_run_that_reached_max_steps_takes_no_step(
    tmp_path, uninterrupted, _base_model, _base_index, qa_train
):
    """checkpoint-6 is mid-epoch (15 steps per epoch): transformers would run step 7 before checking max_steps."""
    model, index = _fresh(_base_model, _base_index)
    trainer = EtragTrainer(model, _args(tmp_path / "run_h"), index=index, train_dataset=qa_train)
    trainer.train(resume_from_checkpoint=f"{uninterrupted.args.output_dir}/checkpoint-{STEPS}")
    assert trainer.state.global_step == STEPS
    assert not [entry for entry in trainer.state.log_history if entry.get("step", 0) > STEPS]
    assert all(
        torch.equal(p, q)
        for p, q in zip(model.parameters(), uninterrupted.etrag_model.parameters(), strict=True)
    )
