"""Soak test: a tiny model trained for thousands of steps with frequent index refreshes, watching memory.

A leak per step or per refresh (a growing log buffer, embeddings or FAISS indexes kept alive after a swap,
tensors kept in the loss bookkeeping) shows as resident memory that climbs with the step count. This trains
the tiny random retriever and BART from `hf_etrag.tiny_models` on the synthetic knowledge base with
`EtragTrainer`, refreshes the index every `--refresh-steps` steps, records the process's resident set size
(RSS) every `--record-every` steps, prints a table, and last the least-squares slope of RSS against the step
(MB per 1,000 steps, over steps >= `--warmup-steps`, so that allocator and first-epoch growth are left out)
and whether the run finished.

    nice -n 10 python benchmarks/soak.py                        # 2,000 steps, refresh every 50
    python benchmarks/soak.py --steps 200 --refresh-steps 20    # a quick look
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback

import numpy as np
import torch
from transformers import PrinterCallback, TrainerCallback

from hf_etrag import (
    EtragConfig,
    EtragModel,
    EtragTrainer,
    EtragTrainingArguments,
    PassageIndex,
    tokenize_corpus,
)
from hf_etrag.data import make_synthetic_knowledge_base, tokenize_qa_dataset
from hf_etrag.tiny_models import tiny_bart_config, tiny_bert_config, train_wordpiece_tokenizer


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps to train")
    parser.add_argument("--refresh-steps", type=int, default=50, help="re-encode the corpus every N steps")
    parser.add_argument("--record-every", type=int, default=100, help="record RSS every N steps")
    parser.add_argument("--warmup-steps", type=int, default=500, help="fit the slope over steps >= this")
    parser.add_argument("--people", type=int, default=60, help="synthetic people (6 passages each)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--n-docs", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: steady on a shared machine; speed is not measured)",
    )
    return parser


def resident_mb() -> float:
    """This process's resident set size in MB (psutil when installed, else /proc/self/status)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024  # the kernel reports kB
    return psutil.Process().memory_info().rss / 2**20


class MemoryRecorder(TrainerCallback):
    """Records (step, seconds since start, RSS MB) at the start and every `every` optimiser steps."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.rows: list[tuple[int, float, float]] = []
        self.start = time.perf_counter()

    def _record(self, step: int) -> None:
        self.rows.append((step, time.perf_counter() - self.start, resident_mb()))

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self.start = time.perf_counter()
        self._record(0)

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if state.global_step % self.every == 0:
            self._record(state.global_step)


def rss_slope(rows: list[tuple[int, float, float]], warmup_steps: int) -> float | None:
    """Least-squares slope of RSS against the step, in MB per 1,000 steps, over steps >= `warmup_steps`."""
    points = [(step, mb) for step, _, mb in rows if step >= warmup_steps]
    if len(points) < 2:
        return None
    steps, mb = np.array(points, dtype=np.float64).T
    return float(np.polyfit(steps, mb, 1)[0] * 1000)


def build(args: argparse.Namespace) -> tuple[EtragModel, PassageIndex, object]:
    knowledge_base = make_synthetic_knowledge_base(n_people=args.people, seed=0)
    tokenizer = train_wordpiece_tokenizer(
        list(knowledge_base.corpus["text"]) + list(knowledge_base.train["question"]), vocab_size=1000
    )
    corpus = tokenize_corpus(knowledge_base.corpus, tokenizer, max_passage_length=48)
    index = PassageIndex(corpus)
    train = tokenize_qa_dataset(knowledge_base.train, tokenizer, passage_ids=index.passage_ids)
    vocab = len(tokenizer)
    config = EtragConfig(
        query_encoder=tiny_bert_config(vocab),
        generator=tiny_bart_config(
            vocab, tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id
        ),
        n_docs=args.n_docs,
    )
    torch.manual_seed(0)
    return EtragModel(config), index, train


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    model, index, train = build(args)
    recorder = MemoryRecorder(args.record_every)
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = EtragTrainingArguments(
            output_dir=output_dir,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=1e-3,
            refresh_steps=args.refresh_steps,
            logging_steps=args.record_every,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            seed=0,
            disable_tqdm=True,
            log_level="error",
        )
        trainer = EtragTrainer(model, training_args, index=index, train_dataset=train, callbacks=[recorder])
        trainer.remove_callback(PrinterCallback)  # the table below replaces the per-log dicts
        error = None
        try:
            trainer.train()
        except Exception:  # a soak run reports how far it got instead of dying without its table
            error = traceback.format_exc()
        steps_done = trainer.state.global_step
    refreshes = sum(
        cb.refresh_count for cb in trainer.callback_handler.callbacks if hasattr(cb, "refresh_count")
    )

    print(
        f"soak: {len(index)} passages, {len(train)} questions, batch {args.batch_size}, K={args.n_docs}, "
        f"refresh every {args.refresh_steps} steps, {torch.get_num_threads()} threads, pid {os.getpid()}"
    )
    print(f"{'step':>6} {'seconds':>9} {'rss MB':>9} {'vs start':>9}")
    first = recorder.rows[0][2] if recorder.rows else float("nan")
    for step, seconds, mb in recorder.rows:
        print(f"{step:>6} {seconds:>9.1f} {mb:>9.1f} {mb - first:>+9.1f}")
    if error:
        print(error, file=sys.stderr)
    print(f"index refreshes: {refreshes} (including the build before the first step)")
    slope = rss_slope(recorder.rows, args.warmup_steps)
    slope_text = "n/a (too few points)" if slope is None else f"{slope:+.2f} MB per 1,000 steps"
    finished = error is None and steps_done == args.steps
    print(
        f"RSS slope over steps >= {args.warmup_steps}: {slope_text}; "
        f"finished: {'yes' if finished else 'no'} ({steps_done}/{args.steps} steps)"
    )
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
