"""The one evaluation path: predict (retrieve + generate) on a test split, score it with its task and write
`metrics.json`, the predictions and a Markdown report with figures.

[`evaluate_model`] scores a model (index attached) on a tokenised test split; the objective and `n_docs` come from
the model itself (`model.config`, `model.objective`), the task settings are arguments. `hf-etrag evaluate`
(`hf_etrag.recipes.evaluate.evaluate_checkpoint`) and `run_training` call it through the recipe layer. The
output folder (default `<checkpoint>/evaluation-<split>`) is written atomically: into a temporary sibling first,
then renamed into place, so a failed evaluation never leaves a half-written report behind. It must be new, empty or
an earlier evaluation report (which is replaced); any other folder (the checkpoint itself, say) is refused before
scoring starts.

Retrieval is scored to depth 20 (recall@1, 2, 5, 10, 20 and MRR), independently of the `n_docs` used to
generate; relation extraction decodes restricted to the training labels (`LabelConstraint`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from datasets import Dataset

from ..atomic import atomic_directory, check_output_folder
from ..data.labels import LabelConstraint
from ..data.relation import verbalize_labels
from ..data.tasks import TaskScores, TaskSettings, get_task
from ..files import EVALUATION_OUTPUT, INDEX_FOLDER, METRICS_FILE, PREDICTIONS_FILE, READER_WARMUP_FOLDER
from ..modeling.model import EtragModel
from ..modeling.tokenization import EtragTokenizers
from ..retrieval.fingerprint import IndexMismatchError, corpus_mismatch, index_mismatch
from .predict import predict
from .report import ReportInputs, write_report

logger = logging.getLogger(__name__)

__all__ = [
    "RECALL_KS",
    "check_index_for_evaluation",
    "evaluate_model",
    "predict",
    "reading_depth",
    "split_name_of",
]

RECALL_KS = (1, 2, 5, 10, 20)


def split_name_of(source: str, split: str | None) -> str:
    """The name of a test split in reports: the split of a folder, the stem of a file, else the split."""
    if split and os.path.isdir(source):
        return split
    return Path(source).stem if os.path.exists(source) else (split or "test")


def reading_depth(model: EtragModel) -> int:
    """The passages (instances) the model reads per query: `config.n_docs`, or the objective's own option for it
    (`n_docs_option`: ETRAG's `k`, 0 for the no-retrieval baseline)."""
    option = model.objective.n_docs_option
    return int(getattr(model.objective, option)) if option is not None else model.config.n_docs


def _retrieval_depth(model: EtragModel) -> int:
    if model.objective.reads_instance_memory:
        return reading_depth(model)  # the instances ETRAG reads (0: none)
    return min(max(RECALL_KS), len(model.index))


def _score(
    model: EtragModel,
    tokenizers: EtragTokenizers,
    task_name: str,
    task_settings: TaskSettings,
    test: Dataset,
    generation_limit: int | None,
    batch_size: int,
    show_progress: bool,
    relation_labels: list[str] | None,
    max_new_tokens: int,
    decoding: str | None = None,
) -> tuple[TaskScores, int]:
    n_generate = min(len(test), generation_limit or len(test))
    task = get_task(task_name)
    constraint, negative = None, None
    if task.constrains_to_labels:
        labels = relation_labels or sorted(set(test["label"]))
        negative = task.negative_label(labels, task_settings)
        constraint = LabelConstraint.from_labels(verbalize_labels(labels), tokenizers.generator_tokenizer)
    predictions = predict(
        model,
        test,
        tokenizers.generator_tokenizer,
        depth=_retrieval_depth(model),
        n_generate=n_generate,
        max_new_tokens=max_new_tokens,
        label_constraint=constraint,
        batch_size=batch_size,
        show_progress=show_progress,
        decoding=decoding,
    )
    ks = () if model.objective.reads_instance_memory else RECALL_KS
    return task.score(test, predictions, model.index, ks=ks, shown=5, negative_label=negative), n_generate


def _saved_corpus_fingerprint(checkpoint_dir: str | os.PathLike) -> str | None:
    try:
        metadata = json.loads((Path(checkpoint_dir) / INDEX_FOLDER / "index_metadata.json").read_text())
        return (metadata.get("fingerprints") or {}).get("corpus")
    except (OSError, ValueError, AttributeError):
        return None


def check_index_for_evaluation(model: EtragModel, checkpoint_dir: str | os.PathLike) -> None:
    """Refuse to score retrieval against an index that does not belong to `model` (`IndexMismatchError`): vectors
    from another document encoder (recall near 0), or the checkpoint's own `passage_index/` over another corpus than
    the one the model was saved with (a subset inflates recall). An index the caller attached over another corpus
    on purpose (not the checkpoint's) gets a warning. See `hf_etrag.retrieval.fingerprint`."""
    index = model.attached_index
    if index is None:
        return
    mismatch = index_mismatch(model, index)
    if mismatch is not None:
        raise IndexMismatchError(
            f"Refusing to evaluate {checkpoint_dir}: the attached passage index does not belong to the model, "
            f"{mismatch}. Retrieval scores would be meaningless. Load the {INDEX_FOLDER}/ saved with this "
            f"checkpoint, or rebuild the index with this model: `refresh_index(model)` "
            f"(`hf_etrag.training.callbacks`), then `model.index.save(<checkpoint>/{INDEX_FOLDER})`."
        )
    mismatch = corpus_mismatch(model, index)
    if mismatch is None:
        return
    if _saved_corpus_fingerprint(checkpoint_dir) == index.corpus_fingerprint:
        raise IndexMismatchError(
            f"Refusing to evaluate {checkpoint_dir}: its {INDEX_FOLDER}/ is not the index the model was trained "
            f"with: {mismatch}. Put back the {INDEX_FOLDER}/ saved with the model, or rebuild it over the training "
            "corpus with this model (`PassageIndex(tokenize_corpus(corpus, ...))`, `refresh_index(model)`, "
            "`save(...)`)."
        )
    logger.warning(
        "Evaluating with an index over another corpus than the model was trained with: %s. Scores are not "
        "comparable with the training run's.",
        mismatch,
    )


def evaluate_model(
    model: EtragModel,
    tokenizers: EtragTokenizers,
    test: Dataset,
    *,
    task: str,
    task_settings: TaskSettings,
    source: str,
    split: str | None,
    checkpoint_dir: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    generation_limit: int | None = None,
    batch_size: int = 16,
    show_progress: bool = False,
    relation_labels: list[str] | None = None,
    max_new_tokens: int = 24,
    report_examples: int = 5,
    decoding: str | None = None,
) -> dict[str, Any]:
    """Score `model` (index attached) on `test`, a tokenised test split (text columns kept) of `task` read from
    `source`/`split`, and write the evaluation folder.

    `task_settings` are the task's options (a recipe's `DataArguments`: `negative_label`, ...); `relation_labels`
    (relation extraction) is the label set decoding is restricted to (default: the training labels stored in the
    instance memory); `decoding` overrides the objective's (RAG-Sequence `sequence_fast`, ...). Returns the metrics
    written to `metrics.json`."""
    split_name = split_name_of(source, split)
    target = Path(output_dir) if output_dir is not None else Path(checkpoint_dir) / f"evaluation-{split_name}"
    check_output_folder(target, EVALUATION_OUTPUT)  # before the (long) scoring, not only when writing
    check_index_for_evaluation(model, checkpoint_dir)
    if relation_labels is None and "label" in model.index.corpus.column_names:
        relation_labels = sorted(set(model.index.corpus["label"]))
    scores, n_generated = _score(
        model,
        tokenizers,
        task,
        task_settings,
        test,
        generation_limit,
        batch_size,
        show_progress,
        relation_labels,
        max_new_tokens,
        decoding,
    )
    settings = {
        "checkpoint": str(Path(checkpoint_dir).resolve()),
        "task": task,
        "objective": model.config.objective,
        "n_docs": reading_depth(model),
        "decoding": decoding or model.objective.decoding,
        "test_source": source,
        "split": split_name,
        "n_examples": len(test),
        "n_generated": n_generated,
    }
    metrics = {**settings, **scores.metrics}
    if scores.per_relation:
        metrics["per_relation"] = scores.per_relation
    checkpoint = Path(checkpoint_dir)
    states = {
        "training": checkpoint / "trainer_state.json",
        "reader warm-up": checkpoint / READER_WARMUP_FOLDER / "trainer_state.json",
    }
    with atomic_directory(target, EVALUATION_OUTPUT) as tmp:
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        with (tmp / PREDICTIONS_FILE).open("w", encoding="utf-8") as handle:
            for record in scores.records:
                handle.write(json.dumps(record) + "\n")
        write_report(
            tmp,
            ReportInputs(
                title=f"{Path(checkpoint_dir).name}: {task} on {split_name}",
                settings=settings,
                metrics=scores.metrics,
                recall_at_k=scores.recall_at_k,
                per_relation=scores.per_relation,
                share_by_rank=scores.share_by_rank,
                examples=scores.records[:report_examples],
                trainer_states=states,
            ),
        )
    return metrics
