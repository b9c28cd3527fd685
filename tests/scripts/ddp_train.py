"""One training run of a tiny EtragModel with index refresh, for `tests/training/test_multiprocess.py`.

Run it once under `accelerate launch` with two processes and once in a single process with twice the
per-device batch: each process writes what the test compares (its final index embeddings, its parameters
and the logged history) to `OUT/rank{process_index}_*`.

    python -m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 \\
        --mixed_precision no --dynamo_backend no --main_process_port 29511 \\
        tests/scripts/ddp_train.py DATA OUT --per-device-batch-size 4

`DATA` holds `model/` (`save_pretrained`), `corpus/` and `train/` (`Dataset.save_to_disk`), prepared once by
the test so that every process starts from the same bytes (the test tokenizer is trained on the fly, and
two trainings of it need not agree). `use_cpu=True` makes accelerate's `PartialState` pick the gloo backend
(`MULTI_CPU`) in the processes that `--multi_gpu` (torchrun) starts; `accelerate launch --cpu` alone starts
one process unless `mpirun` is installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from datasets import load_from_disk

from hf_etrag import EtragModel, EtragTrainer, EtragTrainingArguments, PassageIndex
from hf_etrag.training.callbacks import refresh_index


def run_training(
    data_dir: Path,
    out_dir: Path,
    per_device_batch_size: int,
    max_steps: int,
    refresh_steps: int,
    optim: str = "sgd",
    learning_rate: float = 0.2,
) -> None:
    """Train from `data_dir` and write this process's results to `out_dir`.

    Plain SGD by default: Adam divides each update by the gradient's own scale, so it would hide a wrongly
    scaled gradient (loss summed instead of averaged over processes) and turn float rounding in near-zero
    gradients into differences of order `learning_rate`; SGD keeps the comparison sharp.
    """
    model = EtragModel.from_pretrained(data_dir / "model")
    # No embeddings: the refresh callback builds the index before the first step (sharded, with 2 processes).
    index = PassageIndex(load_from_disk(str(data_dir / "corpus")))
    args = EtragTrainingArguments(
        output_dir=str(out_dir / "trainer"),
        per_device_train_batch_size=per_device_batch_size,
        max_steps=max_steps,
        refresh_steps=refresh_steps,
        optim=optim,
        learning_rate=learning_rate,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        # The same example order in both runs: with 2 processes, step t gives process 0 the first half and
        # process 1 the second half of the single-process run's batch t.
        train_sampling_strategy="sequential",
        dataloader_num_workers=0,
    )
    trainer = EtragTrainer(model, args, index=index, train_dataset=load_from_disk(str(data_dir / "train")))
    trainer.train()
    # Once more through the wrapper (DDP in the 2-process run): refresh_index must unwrap it, and with the
    # parameters unchanged since the refresh at the last step the index must not move.
    wrapped = trainer.model_wrapped
    final_refresh = refresh_index(wrapped, step=max_steps)
    rank = trainer.args.process_index
    fsdp2_difference = None
    if trainer.args.world_size > 1:
        fsdp2_difference = _fsdp2_refresh_difference(trainer.etrag_model, data_dir, index)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / f"rank{rank}_index.npy", index.embeddings)
    parameters = {name: p.detach().cpu().numpy() for name, p in trainer.etrag_model.named_parameters()}
    np.savez(out_dir / f"rank{rank}_params.npz", **parameters)
    summary = {
        "world_size": trainer.args.world_size,
        "built_at_step": index.built_at_step,
        "wrapper": type(wrapped).__name__,
        "final_refresh": final_refresh,
        "fsdp2_refresh_max_difference": fsdp2_difference,
        "log_history": trainer.state.log_history,
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(summary, indent=1))


def _fsdp2_refresh_difference(trained: EtragModel, data_dir: Path, index: PassageIndex) -> float:
    """Refresh through FSDP2 (the `fsdp.yaml` recipe's sharding): a copy of the trained model with its
    encoder layers and root `fully_shard`-ed over the same processes (parameters become DTensor shards)
    re-encodes the corpus; returns the largest difference from the index the DDP run refreshed last."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    copy = EtragModel.from_pretrained(data_dir / "model")
    copy.load_state_dict(trained.state_dict())
    copy.set_index(PassageIndex(index.corpus))
    mesh = init_device_mesh("cpu", (torch.distributed.get_world_size(),))
    for layer in copy.query_encoder.encoder.layer:
        fully_shard(layer, mesh=mesh)
    fully_shard(copy, mesh=mesh)
    refresh_index(copy)
    return float(np.abs(copy.index.embeddings - index.embeddings).max())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--per-device-batch-size", type=int, required=True)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--refresh-steps", type=int, default=2)
    parser.add_argument("--optim", default="sgd", help="`TrainingArguments.optim`, e.g. sgd or adamw_torch.")
    parser.add_argument("--learning-rate", type=float, default=0.2)
    args = parser.parse_args(argv)
    run_training(
        args.data_dir,
        args.out_dir,
        args.per_device_batch_size,
        args.max_steps,
        args.refresh_steps,
        args.optim,
        args.learning_rate,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
