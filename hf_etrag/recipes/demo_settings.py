"""The settings of `hf-etrag demo`, apart from the demo itself so that the command line shows their defaults
without importing torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["DemoSettings"]


@dataclass
class DemoSettings:
    n_people: int = 60
    max_steps: int = 100
    reader_warmup_steps: int = 120  # batches of `batch_size` (gold passages only)
    batch_size: int = 8
    n_docs: int = 3
    learning_rate: float = 1e-4
    retriever_learning_rate: float = 1e-4
    refresh_steps: int = 25
    temperature: float = 0.05
    use_pretrained: bool | None = None  # None: MiniLM if installed
    seed: int = 0
    show_progress: bool = True
    output_dir: str | None = None  # None: a temporary folder, removed at the end

    @classmethod
    def quick(cls, **changes: object) -> DemoSettings:
        """`hf-etrag demo --quick`: fewer people, warm-up and training steps (see docs/results.md for what it
        shows and how long it takes)."""
        return dataclasses.replace(cls(n_people=30, max_steps=30, reader_warmup_steps=60), **changes)
