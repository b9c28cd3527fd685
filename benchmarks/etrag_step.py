"""ETRAG training-step cost: candidates without gradient read from the memory as of the last refresh
(`candidates_from_memory: true`, the default) versus encoded afresh every step (`false`).

Builds the SemEval recipe's model once (`recipes/semeval_etrag.yaml`, the instance memory over the first
`--train_limit` training sentences), then alternates blocks of optimiser steps in the two modes on the same
batches, so both see the same machine load. Prints seconds per step for each mode and, last, their ratio.

    python benchmarks/etrag_step.py --train_limit 800 --blocks 3 --steps 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from hf_etrag.data.collator import EtragDataCollator
from hf_etrag.recipes.arguments import parse_recipe
from hf_etrag.recipes.pipeline import prepare_run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default="recipes/semeval_etrag.yaml")
    parser.add_argument("--train_limit", type=int, default=800)
    parser.add_argument("--blocks", type=int, default=3, help="blocks per mode, interleaved")
    parser.add_argument("--steps", type=int, default=4, help="optimiser steps per block")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))

    recipe = parse_recipe(
        args.recipe, ["--train_limit", str(args.train_limit), "--report_to", "none", "--disable_tqdm", "true"]
    )
    run = prepare_run(recipe)
    model, objective = run.model, run.model.objective
    collate = EtragDataCollator(model.retriever_pad_id, model.generator_pad_id)
    batch_size = recipe.training.per_device_train_batch_size
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()

    def batches(start: int):
        for step in range(args.steps):
            rows = range((start + step) * batch_size, (start + step + 1) * batch_size)
            yield collate([run.train[i % len(run.train)] for i in rows])

    seconds: dict[bool, list[float]] = {True: [], False: []}
    for block in range(args.blocks):
        for from_memory in (True, False):
            objective.candidates_from_memory = from_memory
            begin = time.perf_counter()
            for batch in batches(block * args.steps):
                loss = model(**batch).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            seconds[from_memory].append((time.perf_counter() - begin) / args.steps)
            print(
                f"block {block} candidates_from_memory={from_memory}: {seconds[from_memory][-1]:.2f} s/step"
            )
    load = os.getloadavg()[0]
    memory, fresh = statistics.median(seconds[True]), statistics.median(seconds[False])
    print(f"load average {load:.1f}; median s/step: from memory {memory:.2f}, fresh {fresh:.2f}")
    print(f"ETRAG step speed-up (candidates from memory / fresh): {fresh / memory:.2f}")


if __name__ == "__main__":
    main()
