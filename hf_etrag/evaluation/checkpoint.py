"""`hf-etrag evaluate`: score a trained model folder on a test split and write `metrics.json`, the predictions
and a Markdown report with figures.

[`evaluate_checkpoint`] loads what `hf-etrag train` saved (the model, `passage_index/`, both tokenizers and
`etrag_recipe.json`) and calls [`evaluate_model`], which `run_training` also calls on the model in memory. The
output folder (default `<checkpoint>/evaluation-<split>`) is written atomically: into a temporary sibling first,
then renamed into place, so a failed evaluation never leaves a half-written report behind.

Retrieval is scored to depth 20 (recall@1, 2, 5, 10, 20 and MRR), independently of the `n_docs` used to
generate; relation extraction decodes restricted to the training labels (`LabelConstraint`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from ..atomic import atomic_directory
from ..data.collator import EtragDataCollator
from ..data.labels import LabelConstraint
from ..data.relation import verbalize_labels
from ..data.tasks import Predictions, TaskScores, get_task
from ..modeling.model import EtragModel
from ..modeling.tokenization import EtragTokenizers
from ..recipes.arguments import DataArguments, ModelArguments, load_saved_recipe
from ..recipes.data import load_examples, tokenize_examples
from ..retrieval.index import PassageIndex
from ..training.trainer import INDEX_FOLDER
from .report import ReportInputs, write_report

__all__ = ["RECALL_KS", "evaluate_checkpoint", "evaluate_model", "predict"]

RECALL_KS = (1, 2, 5, 10, 20)
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"


@torch.no_grad()
def predict(
    model: EtragModel,
    dataset: Dataset,
    generator_tokenizer: Any,
    depth: int,
    n_generate: int,
    max_new_tokens: int,
    label_constraint: LabelConstraint | None = None,
    batch_size: int = 16,
    show_progress: bool = False,
) -> Predictions:
    """Retrieve `depth` rows for every example of a tokenised dataset and generate for the first `n_generate`
    (with `label_constraint`: decode restricted to its labels and return raw labels)."""
    model.eval()
    collator = EtragDataCollator(model.retriever_pad_id, model.generator_pad_id)
    device = next(model.parameters()).device
    columns = [c for c in ("input_ids", "generator_input_ids") if c in dataset.column_names]
    retrieved: list[list[int]] = []
    texts: list[str] = []
    model_inputs = dataset.select_columns(columns)
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc="Evaluating", disable=not show_progress, leave=False):
        rows = model_inputs[start : start + batch_size]
        features = [{c: rows[c][i] for c in columns} for i in range(len(rows["input_ids"]))]
        batch = {k: v.to(device) for k, v in collator(features).items()}
        if depth:
            query_vectors = model.encode_queries(batch["input_ids"], batch["attention_mask"])
            retrieved += model.retrieve(query_vectors, depth).cpu().tolist()
        n = min(len(features), max(0, n_generate - start))
        if n == 0:
            continue
        inputs = {k: v[:n] for k, v in batch.items()}
        sequences = model.generate(
            inputs["input_ids"],
            inputs["attention_mask"],
            generator_input_ids=inputs.get("generator_input_ids"),
            generator_attention_mask=inputs.get("generator_attention_mask"),
            max_new_tokens=label_constraint.max_new_tokens if label_constraint else max_new_tokens,
            label_constraint=label_constraint,
        )
        if label_constraint is not None:
            texts += label_constraint.batch_decode(sequences)
        else:
            texts += generator_tokenizer.batch_decode(sequences, skip_special_tokens=True)
    return Predictions(retrieved, texts)


def _split_name(source: str, split: str | None) -> str:
    if split and os.path.isdir(source):
        return split
    return Path(source).stem if os.path.exists(source) else (split or "test")


def _retrieval_depth(model: EtragModel, model_args: ModelArguments) -> int:
    if model.objective.reads_instance_memory:
        return model_args.n_docs  # the instances ETRAG reads (0: none)
    return min(max(RECALL_KS), len(model.index))


def _score(
    model: EtragModel,
    tokenizers: EtragTokenizers,
    model_args: ModelArguments,
    data_args: DataArguments,
    test: Dataset,
    generation_limit: int | None,
    batch_size: int,
    show_progress: bool,
    relation_labels: list[str] | None,
) -> tuple[TaskScores, int]:
    n_generate = min(len(test), generation_limit or len(test))
    task = get_task(data_args.task)
    constraint, negative = None, None
    if task.constrains_to_labels:
        labels = relation_labels or sorted(set(test["label"]))
        negative = task.negative_label(labels, data_args)
        constraint = LabelConstraint.from_labels(verbalize_labels(labels), tokenizers.generator_tokenizer)
    predictions = predict(
        model,
        test,
        tokenizers.generator_tokenizer,
        depth=_retrieval_depth(model, model_args),
        n_generate=n_generate,
        max_new_tokens=data_args.max_new_tokens,
        label_constraint=constraint,
        batch_size=batch_size,
        show_progress=show_progress,
    )
    ks = () if model.objective.reads_instance_memory else RECALL_KS
    return task.score(test, predictions, model.index, ks, shown=5, negative_label=negative), n_generate


def evaluate_model(
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
) -> dict[str, Any]:
    """Score `model` (index attached) on a test split of the recipe's task and write the evaluation folder.

    `test_source`/`test_split`/`limit`/`generation_limit` default to the recipe's `test_*` settings;
    `relation_labels` (relation extraction) is the label set decoding is restricted to (default: the training
    labels stored in the instance memory). Returns the metrics written to `metrics.json`."""
    source = test_source or data_args.test_source
    if not source:
        raise ValueError("No test data: give `test_source` (the recipe has no `test_source` either).")
    split = test_split or data_args.test_split
    limit = limit if limit is not None else data_args.test_limit
    generation_limit = generation_limit if generation_limit is not None else data_args.test_generation_limit
    if relation_labels is None and "label" in model.index.corpus.column_names:
        relation_labels = sorted(set(model.index.corpus["label"]))
    examples = load_examples(data_args, source, split, limit)
    test = tokenize_examples(examples, tokenizers, model_args, model.index)
    scores, n_generated = _score(
        model,
        tokenizers,
        model_args,
        data_args,
        test,
        generation_limit,
        batch_size,
        show_progress,
        relation_labels,
    )
    split_name = _split_name(source, split)
    settings = {
        "checkpoint": str(Path(checkpoint_dir).resolve()),
        "task": data_args.task,
        "objective": model_args.objective,
        "n_docs": model_args.n_docs,
        "test_source": source,
        "split": split_name,
        "n_examples": len(test),
        "n_generated": n_generated,
    }
    metrics = {**settings, **scores.metrics}
    if scores.per_relation:
        metrics["per_relation"] = scores.per_relation
    target = Path(output_dir) if output_dir is not None else Path(checkpoint_dir) / f"evaluation-{split_name}"
    checkpoint = Path(checkpoint_dir)
    states = {
        "training": checkpoint / "trainer_state.json",
        "reader warm-up": checkpoint / "reader_warmup" / "trainer_state.json",
    }
    with atomic_directory(target, keep_other_entries=False) as tmp:
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        with (tmp / PREDICTIONS_FILE).open("w", encoding="utf-8") as handle:
            for record in scores.records:
                handle.write(json.dumps(record) + "\n")
        write_report(
            tmp,
            ReportInputs(
                title=f"{Path(checkpoint_dir).name}: {data_args.task} on {split_name}",
                settings=settings,
                metrics=scores.metrics,
                recall_at_k=scores.recall_at_k,
                per_relation=scores.per_relation,
                share_by_rank=scores.share_by_rank,
                examples=scores.records[: data_args.report_examples],
                trainer_states=states,
            ),
        )
    return metrics


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
) -> dict[str, Any]:
    """Load a folder written by `hf-etrag train` and score it (see [`evaluate_model`])."""
    checkpoint = Path(checkpoint_dir)
    saved = load_saved_recipe(checkpoint)
    index_folder = checkpoint / INDEX_FOLDER
    if not index_folder.is_dir():
        raise FileNotFoundError(
            f"{checkpoint} has no {INDEX_FOLDER}/: train with `save_index_with_checkpoints: true` (the default)."
        )
    model = EtragModel.from_pretrained(str(checkpoint))
    model.set_index(PassageIndex.load(index_folder))
    tokenizers = EtragTokenizers.from_pretrained(checkpoint)
    training = saved.get("training", {})
    if device is None:
        device = "cuda" if torch.cuda.is_available() and not training.get("use_cpu") else "cpu"
    model.to(device)
    return evaluate_model(
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
    )
