"""The demo's total-time estimate, calibrated on the machine as it is now.

A fixed figure ("about 7 minutes") holds only on the machine and load it was measured on; on busy cores the demo
takes several times longer. So before the warm-up the demo times, on its own starting model and data, one
warm-up step (the gold passage only), one end-to-end and one frozen-retriever training step (forward and
backward over K passages), one batch of answers (the evaluation's decoding) and the encoding of a batch of
passages (index refreshes), then multiplies by what the warm-up and the two runs will do. An untimed warm-up step
goes first: the first backward pass of a process pays one-off costs that later steps do not. No weight changes:
gradients are dropped and the optimiser does not step. The calibration costs a few training steps' time, which
the printed total includes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..data.collator import EtragDataCollator
from .demo_settings import DemoSettings
from .pipeline import PreparedRun

__all__ = ["DemoEstimate", "estimate_seconds"]

_ENCODED_ROWS = 32  # passages encoded to time a refresh


def _seconds(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


@dataclass
class DemoEstimate:
    """Seconds per unit of work, measured now, and the demo's total."""

    training_step: float  # end to end
    frozen_step: float  # retriever frozen
    warmup_step: float
    answer_batch: float  # generating answers for one evaluation batch of `batch_size` questions
    refresh: float  # encoding the whole corpus once
    total: float

    def line(self, elapsed: float) -> str:
        load = (
            f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            if hasattr(os, "getloadavg")
            else ""
        )
        seconds = elapsed + self.total
        total = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
        return (
            f"Estimated total time: about {total} (calibrated just now{load}: "
            f"{self.warmup_step:.1f} s per warm-up step, {self.frozen_step:.1f} s per frozen and "
            f"{self.training_step:.1f} s per end-to-end training step, "
            f"{self.answer_batch:.1f} s per batch of answers, {self.refresh:.0f} s per index refresh)."
        )


def estimate_seconds(prepared: PreparedRun, settings: DemoSettings, n_test: int) -> DemoEstimate:
    """Time the demo's units of work on `prepared` and add up what the warm-up and both runs will do."""
    model = prepared.model
    collator = EtragDataCollator(model.retriever_pad_id, model.generator_pad_id)
    rows = prepared.train.select(range(min(settings.batch_size, len(prepared.train))))
    batch = collator(list(rows))
    gold = batch["gold_passage_index"].clamp(min=0).unsqueeze(1)
    was_training = model.training

    def step(**extra: torch.Tensor) -> None:
        model.train()
        model(**batch, **extra).loss.backward()
        model.zero_grad(set_to_none=True)

    def frozen_step() -> None:
        retriever = [p for m in (model.query_encoder, model.document_encoder) for p in m.parameters()]
        trainable = [p.requires_grad for p in retriever]
        for parameter in retriever:
            parameter.requires_grad_(False)
        try:
            step()
        finally:
            for parameter, flag in zip(retriever, trainable, strict=True):
                parameter.requires_grad_(flag)

    @torch.no_grad()
    def answers() -> None:
        model.eval()
        model.generate(
            batch["input_ids"],
            batch["attention_mask"],
            generator_input_ids=batch.get("generator_input_ids"),
            generator_attention_mask=batch.get("generator_attention_mask"),
            max_new_tokens=16,
        )

    @torch.no_grad()
    def encode() -> None:
        model.eval()
        model.encode_passages(*model.memory_tokens(torch.arange(min(_ENCODED_ROWS, len(model.index)))))

    try:
        _seconds(lambda: step(doc_indices=gold))  # not counted: one-off costs of the first backward pass
        warmup_step = _seconds(lambda: step(doc_indices=gold))
        training_step = _seconds(step)
        frozen = _seconds(frozen_step)
        answer_batch = _seconds(answers)
        refresh = _seconds(encode) * len(model.index) / min(_ENCODED_ROWS, len(model.index))
    finally:
        model.train(was_training)
    refreshes = math.ceil(settings.max_steps / settings.refresh_steps) if settings.refresh_steps else 0
    answer_batches = 2 * math.ceil(n_test / len(rows))
    total = (
        settings.reader_warmup_steps * warmup_step
        + settings.max_steps * (training_step + frozen)
        + answer_batches * answer_batch
        + refreshes * refresh
    )
    return DemoEstimate(training_step, frozen, warmup_step, answer_batch, refresh, total)
