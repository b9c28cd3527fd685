"""A Trainer checkpoint is written as one unit (issue 14, item 4): an interrupted or failed save never becomes the
checkpoint that "latest" resumes from, stale leftovers of interrupted saves are removed at the start (only those),
and a full disk says so and where. The SIGKILL tests are in tests/test_atomic_saves.py and
benchmarks/kill_resume.py."""

import errno
import os
import socket

import pytest
from transformers import Trainer

from hf_etrag.retrieval import index as index_module
from hf_etrag.training.checkpoints import (
    IN_PROGRESS_MARKER,
    clean_stale_checkpoints,
    latest_checkpoint,
    resolve_resume_checkpoint,
)
from hf_etrag.training.trainer import EtragTrainer

from ..conftest import make_training_args


def _trainer(tmp_path, model_and_index, qa_train, **overrides) -> EtragTrainer:
    model, index = model_and_index
    settings = dict(save_strategy="steps", save_steps=1, max_steps=3, refresh_steps=2)
    args = make_training_args(tmp_path, **{**settings, **overrides})
    return EtragTrainer(model, args, index=index, train_dataset=qa_train)


def _full_disk_at(step_to_fail: int, trainer: EtragTrainer, original, filename: str):
    def write(*args, **kwargs):
        if trainer.state.global_step == step_to_fail:
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return original(*args, **kwargs)

    return write


@pytest.mark.parametrize("where", ["optimizer", "passage_index"])
def test_a_full_disk_mid_checkpoint_names_the_checkpoint_and_leaves_no_partial_one(
    tmp_path, monkeypatch, model_and_index, qa_train, where
):
    trainer = _trainer(tmp_path, model_and_index, qa_train, save_total_limit=1)
    if where == "optimizer":  # after the weights and the index are written
        target, name, filename = Trainer, "_save_optimizer_and_scheduler", "optimizer.pt"
    else:  # in the middle of the passage index (the model weights are written)
        target, name, filename = index_module.np, "save", "embeddings.npy"
    monkeypatch.setattr(target, name, _full_disk_at(2, trainer, getattr(target, name), filename))
    out = tmp_path / "out"
    with pytest.raises(OSError) as error:
        trainer.train()
    message = str(error.value)
    assert error.value.errno == errno.ENOSPC
    assert f"No space left on device while writing checkpoint {out}/checkpoint-2 (file {filename})" in message
    assert f"the latest complete checkpoint is {out}/checkpoint-1" in message
    assert "MiB free there now" in message and "--resume_from_checkpoint latest" in message
    assert not (out / "checkpoint-2").exists(), (
        "the incomplete checkpoint is removed (it is ours, and space is short)"
    )
    assert latest_checkpoint(out) == str(out / "checkpoint-1")

    monkeypatch.undo()  # space freed: resume from latest and finish
    trainer.train(resume_from_checkpoint="latest")
    assert trainer.state.global_step == 3
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-3"]


def test_an_interrupted_save_is_not_resumed_from(tmp_path, model_and_index, qa_train):
    out = tmp_path / "out"
    _trainer(tmp_path, model_and_index, qa_train, max_steps=2).train()
    partial = out / "checkpoint-3"  # what a kill leaves: weights, an index, no optimizer or trainer state
    partial.mkdir()
    (partial / "model.safetensors").write_bytes((out / "checkpoint-2" / "model.safetensors").read_bytes())
    (partial / IN_PROGRESS_MARKER).write_text('{"pid": 1, "host": "another-host"}')
    assert latest_checkpoint(out) == str(out / "checkpoint-2")
    assert resolve_resume_checkpoint(True, out) == str(out / "checkpoint-2")
    with pytest.raises(
        ValueError, match=r"checkpoint-3 is an incomplete checkpoint: its save was interrupted"
    ):
        resolve_resume_checkpoint(str(partial), out)
    # Saved before this change (no marker) but cut short: no trainer_state.json, so not complete either.
    (partial / IN_PROGRESS_MARKER).unlink()
    assert latest_checkpoint(out) == str(out / "checkpoint-2")


def test_latest_without_a_complete_checkpoint_says_how_to_start(tmp_path):
    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / "checkpoint-1" / IN_PROGRESS_MARKER).write_text("{}")
    with pytest.raises(
        ValueError,
        match=r"holds no complete checkpoint-N \(1 incomplete, from interrupted saves: checkpoint-1\)\. Start "
        r"without `resume_from_checkpoint`",
    ):
        resolve_resume_checkpoint("latest", tmp_path)
    assert (
        resolve_resume_checkpoint("false", tmp_path) is None
        and resolve_resume_checkpoint(None, tmp_path) is None
    )


def test_stale_cleanup_removes_only_what_interrupted_saves_left(tmp_path):
    def checkpoint(name, marker=None, state=True):
        folder = tmp_path / name
        folder.mkdir()
        if state:
            (folder / "trainer_state.json").write_text("{}")
        if marker is not None:
            (folder / IN_PROGRESS_MARKER).write_text(marker)
        return folder

    checkpoint("checkpoint-2")  # complete
    checkpoint("checkpoint-3", marker=f'{{"pid": 999999999, "host": "{socket.gethostname()}"}}', state=False)
    alive = f'{{"pid": {os.getppid()}, "host": "{socket.gethostname()}"}}'  # a live writer on this host
    checkpoint("checkpoint-4", marker=alive, state=False)
    (tmp_path / ".checkpoint-3.tmp-abc123").mkdir()  # an atomic model save cut short
    (tmp_path / ".checkpoint-5.new-xyz").mkdir()  # a checkpoint folder being created
    (tmp_path / "checkpoint-notes").mkdir()  # the user's
    (tmp_path / ".cache").mkdir()
    (tmp_path / "checkpoint-7").mkdir()  # no marker: not ours to judge (kept, never picked as latest)
    removed = clean_stale_checkpoints(tmp_path)
    assert removed == [".checkpoint-3.tmp-abc123", ".checkpoint-5.new-xyz", "checkpoint-3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".cache", "checkpoint-2", "checkpoint-4", "checkpoint-7", "checkpoint-notes",
    ]  # fmt: skip
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")


def test_every_checkpoint_is_complete_after_training(tmp_path, model_and_index, qa_train):
    out = tmp_path / "out"
    _trainer(tmp_path, model_and_index, qa_train).train()
    for step in (1, 2, 3):
        folder = out / f"checkpoint-{step}"
        assert not (folder / IN_PROGRESS_MARKER).exists()
        names = {p.name for p in folder.iterdir()}
        assert {"model.safetensors", "optimizer.pt", "trainer_state.json", "passage_index"} <= names, names
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    # the model records the corpus of the index it was saved with; the index, the encoder saved next to it
    import json

    config = json.loads((out / "checkpoint-3" / "config.json").read_text())
    metadata = json.loads((out / "checkpoint-3" / "passage_index" / "index_metadata.json").read_text())
    assert config["passage_index"]["corpus"] == metadata["fingerprints"]["corpus"]
    assert config["passage_index"]["n_passages"] == metadata["n_passages"]
    assert metadata["fingerprints"]["saved_with_encoder"]["weights"]


def test_hf_etrag_train_resumes_from_latest(tmp_path, tiny_open_qa_files, capsys):
    """`--resume_from_checkpoint latest` (or `true`) from the command line: the recipe pipeline passes the word to
    `EtragTrainer.train`, which resolves it to the newest complete checkpoint."""
    import json

    import yaml

    from hf_etrag.cli import main

    data, out = tiny_open_qa_files["qa"], tmp_path / "run"
    recipe = {"task": "open_qa", "train_source": data, "corpus_source": data, "train_limit": 16,
              "retriever_name_or_path": tiny_open_qa_files["bert"], "n_docs": 2, "max_passage_length": 32,
              "max_context_length": 48, "max_steps": 2, "per_device_train_batch_size": 4, "save_strategy": "steps",
              "save_steps": 1, "report_to": "none", "disable_tqdm": True, "use_cpu": True, "output_dir": str(out)}  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path)]) == 0
    interrupted = out / "checkpoint-3"  # what a kill during the next save would leave
    interrupted.mkdir()
    (interrupted / IN_PROGRESS_MARKER).write_text('{"pid": 1, "host": "elsewhere"}')
    first = (out / "checkpoint-1" / "trainer_state.json").stat().st_mtime_ns
    for word in ("latest", "true"):  # from checkpoint-2 to step 3; then from checkpoint-3, nothing left to do
        assert main(["train", str(path), "--max_steps", "3", "--resume_from_checkpoint", word]) == 0, word
        assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 3
        assert (
            not (interrupted / IN_PROGRESS_MARKER).exists() and (interrupted / "trainer_state.json").is_file()
        )
        assert (out / "checkpoint-1" / "trainer_state.json").stat().st_mtime_ns == first, (
            "not trained from step 0"
        )
