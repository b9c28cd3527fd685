"""Two processes (`accelerate launch`, gloo on CPU) train like one process with the same global batch, and
the index refresh splits the corpus between them while every process ends with the same index."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import load_from_disk

from hf_etrag import EtragModel, PassageIndex
from hf_etrag.retrieval.distributed import shard_bounds
from hf_etrag.training.callbacks import refresh_index

from ..conftest import make_config
from ..scripts.ddp_train import run_training

SCRIPT = Path(__file__).parents[1] / "scripts" / "ddp_train.py"
PER_DEVICE_BATCH, MAX_STEPS, REFRESH_STEPS = 4, 4, 2
# Largest |two processes - one process| measured in four runs on 2 CPU cores (torch 2.13, gloo, SGD lr 0.2,
# 4 steps; the loss fell from 11.9 to 10.1; each session trains its own test tokenizer, so runs differ):
# parameters 3.0e-8 to 1.2e-7 (one float32 step at 1.0; training moved them by up to 0.18), index
# embeddings 8.3e-7 to 2.0e-6 (mostly the encoder batches: shards are bucketed and padded differently),
# logged losses 1.0e-6. Only float summation order differs; the tolerances leave a margin of about 10x.
TOLERANCE = {"params": 1e-6, "index": 2e-5, "loss": 1e-5}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prepare(data_dir: Path, tokenizer, tokenized_corpus, qa_train) -> None:
    """Shared starting point: one tiny model without dropout (so both runs compute the same function) and
    an odd-sized corpus (71 passages: shards of 36 and 35, exercising the padded gather)."""
    torch.manual_seed(0)
    config = make_config(tokenizer)
    config.query_encoder.hidden_dropout_prob = 0.0
    config.query_encoder.attention_probs_dropout_prob = 0.0
    EtragModel(config).save_pretrained(data_dir / "model")
    tokenized_corpus.select(range(71)).save_to_disk(str(data_dir / "corpus"))
    qa_train.save_to_disk(str(data_dir / "train"))


def _load(out_dir: Path, rank: int) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    index = np.load(out_dir / f"rank{rank}_index.npy")
    with np.load(out_dir / f"rank{rank}_params.npz") as params:
        parameters = dict(params)
    return index, parameters, json.loads((out_dir / f"rank{rank}.json").read_text())


def _losses(summary: dict) -> np.ndarray:
    return np.array([entry["loss"] for entry in summary["log_history"] if "loss" in entry])


def _refresh_sizes(summary: dict) -> list[int]:
    return [
        entry["refresh_passages_encoded"] for entry in summary["log_history"] if "refresh_seconds" in entry
    ]


def _max_param_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[name] - b[name]).max()) for name in a)


def test_shards_are_contiguous_and_even():
    np.testing.assert_array_equal(shard_bounds(71, 2), [0, 36, 71])
    np.testing.assert_array_equal(shard_bounds(2, 3), [0, 1, 2, 2])  # more processes than rows: one empty
    with pytest.raises(ValueError, match="`n_shards` must be >= 1"):
        shard_bounds(5, 0)


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_batch(tmp_path, tokenizer, tokenized_corpus, qa_train):
    """`accelerate launch` with 2 processes x 4 examples against 1 process x 8 examples.

    Why the runs are comparable: `EtragModel`'s loss is a mean over the batch's examples and DDP averages
    gradients over processes, so two equal halves give the gradient of the full batch's mean; the sampler is
    sequential in both runs and accelerate hands consecutive per-device batches to processes 0 and 1, so
    step t of both runs sees the same 8 examples; dropout is off and every process starts from the same
    saved model. The logged loss is gathered over processes (their mean) by the Trainer.
    """
    data, multi, single = tmp_path / "data", tmp_path / "two_processes", tmp_path / "one_process"
    _prepare(data, tokenizer, tokenized_corpus, qa_train)
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        str(SCRIPT), str(data), str(multi), "--per-device-batch-size", str(PER_DEVICE_BATCH),
        "--max-steps", str(MAX_STEPS), "--refresh-steps", str(REFRESH_STEPS),
    ]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", CUDA_VISIBLE_DEVICES="")
    # The reference run trains here while the two launched processes start up (they spend most of their
    # time importing), which keeps the test's wall time down on a 2-core machine. Output goes to files: a
    # full pipe would stall the launched processes until `wait`.
    log = tmp_path / "launch.log"
    with (
        log.open("w") as sink,
        subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT) as launched,
    ):
        try:
            run_training(data, single, 2 * PER_DEVICE_BATCH, MAX_STEPS, REFRESH_STEPS)
            launched.wait(timeout=240)
        finally:
            launched.kill()
    assert launched.returncode == 0, log.read_text()[-4000:]

    (index0, params0, summary0), (index1, params1, summary1) = _load(multi, 0), _load(multi, 1)
    index_single, params_single, summary_single = _load(single, 0)
    assert summary0["world_size"] == summary1["world_size"] == 2 and summary_single["world_size"] == 1
    # Each process encoded its own shard at every refresh (train begin, steps 2 and 4) ...
    shard_sizes = np.diff(shard_bounds(71, 2)).tolist()
    assert (
        _refresh_sizes(summary0) == [shard_sizes[0]] * 3 and _refresh_sizes(summary1) == [shard_sizes[1]] * 3
    )
    assert _refresh_sizes(summary_single) == [71] * 3
    # ... and both ended with the same index, built after the last step; DDP kept the parameters in sync.
    assert summary0["built_at_step"] == summary1["built_at_step"] == MAX_STEPS
    np.testing.assert_array_equal(index0, index1)
    assert _max_param_diff(params0, params1) == 0.0
    # refresh_index unwraps the DDP model it is given; unchanged parameters re-encode to the same index.
    assert summary0["wrapper"] == "DistributedDataParallel"
    assert summary0["final_refresh"]["refresh_staleness"] <= 1e-7
    # The same refresh through FSDP2-sharded parameters (recipes/accelerate/fsdp.yaml) gives the same index.
    assert summary0["fsdp2_refresh_max_difference"] <= 1e-6

    initial_model = EtragModel.from_pretrained(data / "model")
    moved = _max_param_diff(
        {n: p.detach().numpy() for n, p in initial_model.named_parameters()}, params_single
    )
    initial_model.set_index(PassageIndex(load_from_disk(str(data / "corpus"))))
    refresh_index(initial_model)
    index_moved = float(np.abs(initial_model.index.embeddings - index_single).max())
    index_diff = float(np.abs(index0 - index_single).max())
    param_diff = _max_param_diff(params0, params_single)
    loss_diff = float(np.abs(_losses(summary0) - _losses(summary_single)).max())
    print(
        f"two vs one process: index {index_diff:.3e}, params {param_diff:.3e}, loss {loss_diff:.3e}; "
        f"training moved params {moved:.3e}, index {index_moved:.3e}"
    )
    assert len(_losses(summary0)) == len(_losses(summary_single)) == MAX_STEPS
    # Training moved the parameters far more than the two runs differ.
    assert moved > 1000 * param_diff
    assert index_diff <= TOLERANCE["index"]
    assert param_diff <= TOLERANCE["params"]
    assert loss_diff <= TOLERANCE["loss"]
