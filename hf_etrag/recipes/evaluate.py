"""A recipe's evaluation: the test split of the recipe's task, loaded and tokenised as the recipe says, scored by
[`hf_etrag.evaluation.checkpoint.evaluate_model`]; `hf-etrag evaluate` on a folder that `hf-etrag train` wrote."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..evaluation.checkpoint import evaluate_model, reading_depth
from ..files import INDEX_FOLDER, RECIPE_FILE
from ..modeling.model import EtragModel
from ..modeling.tokenization import EtragTokenizers
from ..retrieval.index import PassageIndex
from .arguments import DataArguments, ModelArguments, load_saved_recipe
from .data import load_examples, tokenize_examples

__all__ = ["evaluate_checkpoint", "evaluate_recipe_model"]

logger = logging.getLogger(__name__)


def _note_n_docs(model: EtragModel, model_args: ModelArguments, recipe_file: Path) -> None:
    """Evaluation retrieves as many passages as the model's config says; say so when the saved recipe disagrees
    (its file was edited, or the model was replaced by another)."""
    used, written = reading_depth(model), model_args.n_docs
    if used != written:
        logger.warning(
            "Evaluating with n_docs=%d, the model's own (its config.json), not n_docs=%d from %s: the model "
            "retrieves as it was saved; the recipe file only records the run. To evaluate with other settings, use "
            "the Python API (`hf_etrag.evaluation.checkpoint.evaluate_model`).",
            used,
            written,
            recipe_file,
        )


def evaluate_recipe_model(
    model: EtragModel,
    tokenizers: EtragTokenizers,
    model_args: ModelArguments,
    data_args: DataArguments,
    checkpoint_dir: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    test_source: str | None = None,
    test_split: str | None = None,
    limit: int | None = None,
    generation_limit: int | None = None,
    batch_size: int = 16,
    show_progress: bool = False,
    relation_labels: list[str] | None = None,
    decoding: str | None = None,
) -> dict[str, Any]:
    """Score `model` (index attached) on a test split of the recipe's task and write the evaluation folder.

    `test_source`/`test_split`/`limit`/`generation_limit` default to the recipe's `test_*` settings;
    `relation_labels` (relation extraction) is the label set decoding is restricted to (default: the training
    labels stored in the instance memory); `decoding` defaults to the recipe's. Returns the metrics written to
    `metrics.json`."""
    source = test_source or data_args.test_source
    if not source:
        raise ValueError("No test data: give `test_source` (the recipe has no `test_source` either).")
    split = test_split or data_args.test_split
    limit = limit if limit is not None else data_args.test_limit
    generation_limit = generation_limit if generation_limit is not None else data_args.test_generation_limit
    examples = load_examples(data_args, source, split, limit)
    test = tokenize_examples(examples, tokenizers, model_args, model.index)
    return evaluate_model(
        model,
        tokenizers,
        test,
        task=data_args.task,
        task_settings=data_args,
        source=source,
        split=split,
        checkpoint_dir=checkpoint_dir,
        output_dir=output_dir,
        generation_limit=generation_limit,
        batch_size=batch_size,
        show_progress=show_progress,
        relation_labels=relation_labels,
        max_new_tokens=data_args.max_new_tokens,
        report_examples=data_args.report_examples,
        decoding=decoding or data_args.decoding,
    )


def evaluate_checkpoint(
    checkpoint_dir: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    test_source: str | None = None,
    test_split: str | None = None,
    limit: int | None = None,
    generation_limit: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    show_progress: bool = True,
    decoding: str | None = None,
) -> dict[str, Any]:
    """Load a folder written by `hf-etrag train` (the model, `passage_index/`, both tokenizers and
    `etrag_recipe.json`) and score it (see [`evaluate_recipe_model`])."""
    checkpoint = Path(checkpoint_dir)
    saved = load_saved_recipe(checkpoint)
    index_folder = checkpoint / INDEX_FOLDER
    if not index_folder.is_dir():
        raise FileNotFoundError(
            f"{checkpoint} has no {INDEX_FOLDER}/: train with `save_index_with_checkpoints: true` (the default)."
        )
    try:
        model = EtragModel.from_pretrained(str(checkpoint))
    except Exception as error:
        if type(error).__module__.split(".")[0] not in ("safetensors", "safetensors_rust"):
            raise
        raise ValueError(
            f"A weights file of {checkpoint} (model.safetensors, or a base model it loads) is corrupt or truncated "
            f"({type(error).__name__}: {error}), so the model cannot be loaded. Fix: copy the folder again from "
            "where it was trained, or evaluate an earlier checkpoint-N of the run."
        ) from error
    _note_n_docs(model, saved["model"], checkpoint / RECIPE_FILE)
    model.set_index(PassageIndex.load(index_folder))
    tokenizers = EtragTokenizers.from_pretrained(checkpoint)
    training = saved.get("training", {})
    if device is None:
        device = "cuda" if torch.cuda.is_available() and not training.get("use_cpu") else "cpu"
    model.to(device)
    return evaluate_recipe_model(
        model,
        tokenizers,
        saved["model"],
        saved["data"],
        checkpoint_dir=checkpoint,
        output_dir=output_dir,
        test_source=test_source,
        test_split=test_split,
        limit=limit,
        generation_limit=generation_limit,
        batch_size=batch_size or training.get("per_device_eval_batch_size", 16),
        show_progress=show_progress,
        decoding=decoding,
    )
