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
