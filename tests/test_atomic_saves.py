"""An exception (or a kill) in the middle of a save leaves the previous model/index folder intact and loadable,
and an exception leaves no temporary folder behind."""

import subprocess
import sys
import textwrap

import faiss
import numpy as np
import pytest
import torch
import transformers.modeling_utils
from datasets import Dataset

from hf_etrag import EtragModel, PassageIndex


class _Interrupted(RuntimeError):
    pass


def _after_writing(original):
    """Write the file for real, then fail: the temporary folder then holds part of the new version."""

    def write(*args, **kwargs):
        original(*args, **kwargs)
        raise _Interrupted("simulated crash in the middle of a save")

    return write


def _leftovers(parent, name):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(
        torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("with_other_entries", [False, True], ids=["model_folder", "trainer_output_dir"])
def test_interrupted_model_save_keeps_the_previous_model(
    tmp_path, monkeypatch, _base_model, with_other_entries
):
    folder = tmp_path / "model"
    _base_model.save_pretrained(folder)
    if with_other_entries:  # a Trainer's output_dir also holds checkpoints: the save must keep them
        (folder / "checkpoint-2").mkdir()
        (folder / "checkpoint-2" / "trainer_state.json").write_text("{}")
    changed = EtragModel(_base_model.config)
    with torch.no_grad():
        for parameter in changed.parameters():
            parameter.add_(1.0)
    monkeypatch.setattr(
        transformers.modeling_utils,
        "safe_save_file",
        _after_writing(transformers.modeling_utils.safe_save_file),
    )
    with pytest.raises(_Interrupted):
        changed.save_pretrained(folder)
    monkeypatch.undo()

    assert _leftovers(tmp_path, "model") == [], "the temporary folder is removed on error"
    assert _same_weights(EtragModel.from_pretrained(folder), _base_model)
    assert (folder / "checkpoint-2" / "trainer_state.json").is_file() == with_other_entries
    changed.save_pretrained(folder)  # and the next save goes through
    assert _same_weights(EtragModel.from_pretrained(folder), changed)


def _index(corpus, value: float) -> PassageIndex:
    return PassageIndex(corpus, embeddings=np.full((len(corpus), 4), value, np.float32))


@pytest.mark.parametrize(
    ("module", "name"),
    [(np, "save"), (faiss, "write_index"), (Dataset, "save_to_disk")],
    ids=["embeddings", "faiss_index", "corpus"],
)
def test_interrupted_index_save_keeps_the_previous_index(
    tmp_path, monkeypatch, tokenized_corpus, module, name
):
    folder = tmp_path / "index"
    old = _index(tokenized_corpus, 1.0)
    old.built_at_step = 10
    old.save(folder)
    monkeypatch.setattr(module, name, _after_writing(getattr(module, name)))
    with pytest.raises(_Interrupted):
        _index(tokenized_corpus, 2.0).save(folder)
    monkeypatch.undo()

    assert _leftovers(tmp_path, "index") == []
    loaded = PassageIndex.load(folder)
    np.testing.assert_array_equal(loaded.embeddings, old.embeddings)
    assert loaded.built_at_step == 10 and loaded.passage_ids == old.passage_ids


@pytest.mark.slow  # a subprocess that imports torch and transformers: a few seconds
def test_killed_index_save_keeps_the_previous_index(tmp_path, tokenized_corpus):
    """SIGKILL in the middle of the save (no `except`, no `finally` runs): the old folder still loads."""
    folder = tmp_path / "index"
    _index(tokenized_corpus, 1.0).save(folder)
    tokenized_corpus.save_to_disk(str(tmp_path / "corpus"))
    script = textwrap.dedent(
        f"""
        import os, signal
        import numpy as np
        from datasets import load_from_disk
        from hf_etrag.retrieval.index import PassageIndex

        corpus = load_from_disk({str(tmp_path / "corpus")!r})
        index = PassageIndex(corpus, embeddings=np.full((len(corpus), 4), 2.0, np.float32))
        real_save = np.save
        def save_then_die(*args, **kwargs):
            real_save(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        np.save = save_then_die
        index.save({str(folder)!r})
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr[-2000:]
    loaded = PassageIndex.load(folder)
    np.testing.assert_array_equal(loaded.embeddings, np.full((len(tokenized_corpus), 4), 1.0, np.float32))
    # A kill cannot clean up: the half-written sibling stays (hidden, next to the folder) until removed by hand.
    assert len(_leftovers(tmp_path, "index")) == 1


# ---- no save removes what it did not write (issue 14) ---------------------------------------------------------------


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_index_save_into_a_run_folder_is_refused_and_removes_nothing(tmp_path, tokenized_corpus):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"model_type": "etrag"}')
    (run / "checkpoint-2").mkdir()
    (run / "checkpoint-2" / "trainer_state.json").write_text("{}")
    before = _tree(run)
    with pytest.raises(
        FileExistsError,
        match=r"Refusing to write the passage index into .*run: it holds other files "
        r"\(checkpoint-2, config.json\) and is not a passage index \(no index_metadata.json\)",
    ) as error:
        _index(tokenized_corpus, 1.0).save(run)
    assert isinstance(error.value, ValueError)  # the commands report it with exit status 2
    assert f"{run}/passage_index" in str(error.value)
    assert _tree(run) == before
    assert _leftovers(tmp_path, "run") == []


def test_index_save_into_a_file_is_refused(tmp_path, tokenized_corpus):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    with pytest.raises(FileExistsError, match="it is a file, not a folder"):
        _index(tokenized_corpus, 1.0).save(path)
    assert path.read_text() == "mine"


def test_index_save_replaces_an_earlier_index_and_keeps_other_entries(tmp_path, tokenized_corpus):
    folder = tmp_path / "index"
    _index(tokenized_corpus, 1.0).save(folder)
    (folder / "NOTES.md").write_text("kept")  # someone's file next to the index
    empty = PassageIndex(tokenized_corpus)  # no embeddings: embeddings.npy and index.faiss are stale
    empty.save(folder)
    assert (folder / "NOTES.md").read_text() == "kept"
    assert not (folder / "embeddings.npy").exists() and not (folder / "index.faiss").exists()
    assert PassageIndex.load(folder).embeddings is None
    _index(tokenized_corpus, 2.0).save(folder)  # and an earlier index without other entries: one rename
    (folder / "NOTES.md").unlink()
    _index(tokenized_corpus, 3.0).save(folder)
    np.testing.assert_array_equal(
        PassageIndex.load(folder).embeddings, _index(tokenized_corpus, 3.0).embeddings
    )
    assert _leftovers(tmp_path, "index") == []


def test_model_save_refuses_to_replace_another_models_files(tmp_path, _base_model):
    base = tmp_path / "bert-base"  # e.g. `output_dir` pointed at a base model's folder
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "bert"}')
    (base / "model.safetensors").write_bytes(b"weights")
    before = _tree(base)
    with pytest.raises(
        FileExistsError,
        match=r"Refusing to write the model into .*bert-base: its config.json was "
        r"not written by hf-etrag's model writer",
    ):
        _base_model.save_pretrained(base)
    assert _tree(base) == before
    (base / "config.json").unlink()  # weights without a config: still not an hf-etrag model
    with pytest.raises(
        FileExistsError, match=r"it holds model.safetensors but is not a model \(no config.json\)"
    ):
        _base_model.save_pretrained(base)
    assert (base / "model.safetensors").read_bytes() == b"weights"
    assert _leftovers(tmp_path, "bert-base") == []


def test_model_save_shares_a_trainer_output_dir_and_replaces_its_own_earlier_save(tmp_path, _base_model):
    out = tmp_path / "out"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    _base_model.save_pretrained(out)
    _base_model.save_pretrained(out)  # an earlier hf-etrag model: replaced
    assert (out / "notes.txt").read_text() == "mine" and (out / "checkpoint-2").is_dir()
    assert _same_weights(EtragModel.from_pretrained(out), _base_model)


def test_evaluation_folder_check_refuses_a_run_folder_and_accepts_an_earlier_report(tmp_path):
    from hf_etrag.atomic import check_output_folder
    from hf_etrag.files import EVALUATION_OUTPUT

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(
        FileExistsError,
        match=r"it holds other files \(config.json\) and is not an evaluation report \(no metrics.json\)",
    ):
        check_output_folder(run, EVALUATION_OUTPUT)
    report = tmp_path / "evaluation-test"
    report.mkdir()
    (report / "metrics.json").write_text('{"checkpoint": "run", "task": "open_qa", "n_examples": 3}')
    check_output_folder(report, EVALUATION_OUTPUT)
    (report / "metrics.json").write_text('{"accuracy": 0.5}')  # someone else's metrics.json
    with pytest.raises(FileExistsError, match="its metrics.json was not written by hf-etrag"):
        check_output_folder(report, EVALUATION_OUTPUT)


def test_every_file_of_a_report_is_an_entry_of_the_evaluation_kind(tmp_path):
    """An earlier report's stale figures are removed on replace only if the kind lists them."""
    import json

    from hf_etrag.evaluation.report import ReportInputs, write_report
    from hf_etrag.files import EVALUATION_OUTPUT

    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]}))
    inputs = ReportInputs(
        title="t", settings={}, metrics={}, recall_at_k={1: 0.5, 2: 1.0},
        per_relation={"a": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}},
        share_by_rank={"same label": [0.5, 0.25]}, trainer_states={"training": state},
    )  # fmt: skip
    (tmp_path / "report").mkdir()
    written = write_report(tmp_path / "report", inputs)
    assert len(written) == 5 and {p.name for p in (tmp_path / "report").iterdir()} == set(written)
    for name in [*written, "metrics.json", "predictions.jsonl"]:
        assert EVALUATION_OUTPUT.owns(name), name


# ---- a Trainer checkpoint is one unit (issue 14, item 4); random kills: benchmarks/kill_resume.py -------------------


@pytest.mark.slow  # a training subprocess plus two short runs: about half a minute
def test_a_run_killed_mid_checkpoint_resumes_from_the_last_complete_one(
    tmp_path, _base_model, tokenized_corpus, qa_train
):
    """SIGKILL after checkpoint-2's weights and index are written, before its optimizer and trainer state: transformers'
    own lookup names that half-written checkpoint-2 (and resuming from it failed); "latest" is checkpoint-1, and the
    resumed run ends exactly where an uninterrupted one does."""
    import json

    from transformers.trainer_utils import get_last_checkpoint

    from hf_etrag import EtragTrainer, EtragTrainingArguments
    from hf_etrag.training.checkpoints import latest_checkpoint

    _base_model.save_pretrained(tmp_path / "initial")  # every process starts from the same weights and data
    tokenized_corpus.save_to_disk(str(tmp_path / "corpus"))
    qa_train.save_to_disk(str(tmp_path / "train"))
    settings = dict(per_device_train_batch_size=4, learning_rate=1e-2, max_steps=3, save_strategy="steps",
                    save_steps=1, refresh_steps=2, report_to=[], use_cpu=True, seed=0, disable_tqdm=True)  # fmt: skip
    out = tmp_path / "out"
    script = textwrap.dedent(
        f"""
        import json, os, signal
        from datasets import load_from_disk
        from transformers import Trainer
        from hf_etrag import EtragModel, EtragTrainer, EtragTrainingArguments, PassageIndex

        real_save = Trainer._save_optimizer_and_scheduler
        def save_then_die(self, output_dir):
            if self.state.global_step == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            real_save(self, output_dir)
        Trainer._save_optimizer_and_scheduler = save_then_die
        args = EtragTrainingArguments(output_dir={str(out)!r}, **json.loads({json.dumps(settings)!r}))
        index = PassageIndex(load_from_disk({str(tmp_path / "corpus")!r}))
        model = EtragModel.from_pretrained({str(tmp_path / "initial")!r})
        EtragTrainer(model, args, index=index, train_dataset=load_from_disk({str(tmp_path / "train")!r})).train()
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == -9, result.stderr[-2000:]
    half_written = out / "checkpoint-2"
    assert (half_written / "model.safetensors").is_file() and (half_written / "passage_index").is_dir()
    assert not (half_written / "optimizer.pt").exists() and not (half_written / "trainer_state.json").exists()
    assert get_last_checkpoint(str(out)) == str(half_written)  # the trap
    assert latest_checkpoint(out) == str(out / "checkpoint-1")

    def run(output_dir, resume=None):
        model, index = EtragModel.from_pretrained(tmp_path / "initial"), PassageIndex(tokenized_corpus)
        args = EtragTrainingArguments(output_dir=str(output_dir), **settings)
        trainer = EtragTrainer(model, args, index=index, train_dataset=qa_train)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    resumed, reference = run(out, resume=True), run(tmp_path / "reference")
    assert resumed.state.global_step == 3
    assert _same_weights(resumed.etrag_model, reference.etrag_model)
    np.testing.assert_array_equal(
        resumed.etrag_model.index.embeddings, reference.etrag_model.index.embeddings
    )
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert (half_written / "trainer_state.json").is_file(), "checkpoint-2 was written again, whole"
    assert json.loads((half_written / "trainer_state.json").read_text())["global_step"] == 2
