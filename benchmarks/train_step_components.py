"""Where our training step spends its time, before and after the step's optimisations, on the realistic preset of
`train_step_vs_hf_rag.py` (100-word SQuAD passages, contexts up to 300 tokens, a 50,265-token BART vocabulary).

Variants of our side, timed in alternating blocks of `EtragTrainer` steps (same data, same initial weights):

- `plain`: one generator call padded to the batch's longest context, the full `(B*K, T, V)` logits;
- `buckets`: length-bucketed generator calls (`generator_length_buckets: 4`);
- `chunked head`: the LM head applied to target positions only, a chunk at a time (`chunked_lm_head: true`);
- `default`: both (the library's defaults).

Per component (module hooks; the CPU runs each op synchronously): the forward passes of the question encoder,
generator encoder and generator decoder, the optimiser step, and what the hooks leave (every backward pass, the
LM head and loss, retrieval, context building, data). The last line gives the default's speed-up over plain.

    python benchmarks/train_step_components.py --threads 1
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from transformers import PrinterCallback, TrainerCallback

from hf_etrag import EtragTrainer, EtragTrainingArguments

import train_step_vs_hf_rag as bench  # noqa: E402 (benchmarks/ is on sys.path when run as a script)

VARIANTS = {
    "plain": dict(generator_length_buckets=1, chunked_lm_head=False),
    "buckets": dict(generator_length_buckets=4, chunked_lm_head=False),
    "chunked head": dict(generator_length_buckets=1, chunked_lm_head=True),
    "default": dict(generator_length_buckets=4, chunked_lm_head=True),
}
COMPONENTS = (
    "question encoder (forward)",
    "generator encoder (forward)",
    "generator decoder (forward)",
    "optimiser",
    "all backward passes, LM head, loss, rest",
)


class ComponentClock(TrainerCallback):
    """Seconds per component over the timed steps: forward and backward time of hooked modules, the optimiser
    step, and each whole step."""

    def __init__(self, model: torch.nn.Module, warmup: int) -> None:
        self.warmup, self.step = warmup, 0
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: dict[str, float] = {}
        generator = model.generator
        parts = dict(zip(COMPONENTS[:3], (model.query_encoder, generator.get_encoder(), generator.get_decoder())))
        for name, module in parts.items():
            module.register_forward_pre_hook(lambda *_, n=name: self._start(n))
            module.register_forward_hook(lambda *_, n=name: self._stop(n))

    def _timing(self) -> bool:
        return self.step >= self.warmup

    def _start(self, name: str) -> None:
        self._open[name] = time.perf_counter()

    def _stop(self, name: str) -> None:
        if self._timing() and name in self._open:
            self.seconds[name] += time.perf_counter() - self._open.pop(name)

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        self._step_start = time.perf_counter()

    def on_pre_optimizer_step(self, args, state, control, **kwargs) -> None:
        self._optimiser_start = time.perf_counter()

    def on_optimizer_step(self, args, state, control, **kwargs) -> None:
        if self._timing():
            self.seconds["optimiser"] += time.perf_counter() - self._optimiser_start

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if self._timing():
            self.seconds["step"] += time.perf_counter() - self._step_start
        self.step += 1


def time_variant(setup_model, dataset, overrides: dict, args: argparse.Namespace, folder: Path, preset: dict):
    model = copy.deepcopy(setup_model)
    for key, value in overrides.items():
        setattr(model.config, key, value)
    clock = ComponentClock(model, preset["warmup"])
    trainer = EtragTrainer(
        model,
        EtragTrainingArguments(
            output_dir=str(folder), save_index_with_checkpoints=False, per_device_train_batch_size=preset["batch"],
            max_steps=preset["warmup"] + preset["steps"], learning_rate=1e-4, lr_scheduler_type="constant",
            logging_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
            seed=args.seed,
        ),
        train_dataset=dataset,
        callbacks=[clock],
    )  # fmt: skip
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    seconds = dict(clock.seconds)
    hooked = sum(seconds.get(name, 0.0) for name in (*COMPONENTS[:3], "optimiser"))
    # what the hooks do not cover: every backward pass (transformers' modules return output objects, which
    # module backward hooks cannot see), the LM head and loss, retrieval, context building and data loading
    seconds[COMPONENTS[-1]] = seconds["step"] - hooked
    return {name: value / preset["steps"] for name, value in seconds.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per variant")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=bench.SHARED / "corpus.jsonl")
    parser.add_argument("--questions", type=Path, default=bench.SHARED / "train.jsonl")
    parser.add_argument("--preset", default="realistic", choices=sorted(bench.PRESETS))
    args = parser.parse_args(argv)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_args = bench.make_parser().parse_args(
        ["--preset", args.preset, "--corpus", str(args.corpus), "--questions", str(args.questions)]
    )
    preset = bench.resolve_preset(bench_args, args.preset)
    preset["steps"] = args.steps
    with tempfile.TemporaryDirectory(prefix="components_") as tmp:
        setup = bench.build(bench_args, preset, Path(tmp))
        ours = setup.trainers["ours"][0]
        print(setup.description)
        runs: dict[str, list[dict[str, float]]] = defaultdict(list)
        names = list(VARIANTS)
        for repeat in range(args.repeats):
            for name in names if repeat % 2 == 0 else names[::-1]:
                runs[name].append(
                    time_variant(ours.model, ours.train_dataset, VARIANTS[name], args, Path(tmp) / "v", preset)
                )
    print(f"seconds per step (median of {args.repeats} blocks of {args.steps} steps after 1 warm-up step)")
    print("| component | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for component in (*COMPONENTS, "step"):
        cells = [statistics.median(run.get(component, 0.0) for run in runs[name]) for name in names]
        print(f"| {component} | " + " | ".join(f"{cell:.3f}" for cell in cells) + " |")
    plain = statistics.median(run["step"] for run in runs["plain"])
    for name in names[1:]:
        step = statistics.median(run["step"] for run in runs[name])
        print(f"{name}: {plain / step:.2f}x the plain step")
    default = statistics.median(run["step"] for run in runs["default"])
    print(f"default step speed-up over plain (one padded call, full logits): {plain / default:.2f}")


if __name__ == "__main__":
    main()
