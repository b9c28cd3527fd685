"""`hf-etrag train`: one recipe from data to a saved, evaluated model.

[`run_training`] loads the data through the adapters, builds the model ([`hf_etrag.recipes.models`]) and its index
([`hf_etrag.recipes.data`]), optionally warms the generator up as a reader, trains with [`EtragTrainer`], saves the
model, both tokenizers, the index and the recipe into `output_dir`, and scores the test split
([`hf_etrag.evaluation.checkpoint`]). Under `accelerate launch` every process trains (the Trainer handles
distribution); only the main process writes the recipe and the evaluation report.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from datasets import Dataset
from transformers import set_seed

from ..adapters.apply import PeftArguments, apply_peft
from ..files import READER_WARMUP_FOLDER
from ..modeling.model import EtragModel
from ..modeling.tokenization import EtragTokenizers
from ..training.arguments import EtragTrainingArguments
from ..training.callbacks import refresh_index
from ..training.trainer import EtragTrainer
from .arguments import DataArguments, ModelArguments, Recipe
from .data import build_index, load_examples, reader_warmup_dataset, training_dataset
from .evaluate import evaluate_recipe_model

__all__ = ["PreparedRun", "READER_WARMUP_FOLDER", "prepare_run", "run_training", "warm_up_reader"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _reader_only(model: EtragModel) -> Iterator[None]:
    """Train the generator alone: encoders (and jsa/vrag's posterior) frozen, plain top-K likelihood
    (`rag_sequence` with the one gold passage is the reader's NLL) and no auxiliary retriever losses; all restored
    afterwards."""
    objective, auxiliary = model.objective, model.auxiliary_losses
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    try:
        model.set_objective("rag_sequence")
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name.startswith("generator.") and trainable.get(name, False))
        yield
    finally:
        model.set_objective(objective, auxiliary)
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(trainable[name])


def warm_up_reader(
    model: EtragModel, train: Dataset, training_args: EtragTrainingArguments, steps: int, tokenizers: Any
) -> None:
    """`steps` generator-only steps on (query, gold passage) pairs, logged to `output_dir/reader_warmup/`.

    A BERT2BERT generator warm-started from an encoder has untrained cross-attention: under RAG it would spread
    its little signal over K passages of which at most one answers, and a few hundred CPU steps do not get it
    reading. Warming it up on gold passages stands in for a generator that arrives pretrained as a reader; the
    retriever is untouched, so frozen and end-to-end runs with the same warm-up start from the same reader."""
    args = dataclasses.replace(
        training_args,
        output_dir=os.path.join(training_args.output_dir, READER_WARMUP_FOLDER),
        max_steps=steps,
        lr_scheduler_type="constant",
        warmup_steps=0,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        push_to_hub=False,
        refresh_steps=0,
        refresh_on_epoch_end=False,
        logging_steps=max(1, min(training_args.logging_steps, steps // 4 or 1)),
    )
    os.makedirs(args.output_dir, exist_ok=True)
    with _reader_only(model):
        trainer = EtragTrainer(
            model, args, train_dataset=reader_warmup_dataset(train), processing_class=tokenizers
        )
        trainer.train()
        trainer.save_state()


def _document_encoder_trained(model: EtragModel) -> bool:
    return any(p.requires_grad for p in model.document_encoder.parameters())


@dataclass
class PreparedRun:
    """What a recipe's training starts from: the model with its index attached (encoded when it retrieves), the
    tokenizers, the tokenised datasets and the training examples as loaded (text columns kept)."""

    model: EtragModel
    tokenizers: EtragTokenizers
    train: Dataset
    eval_dataset: Dataset | None
    train_examples: Dataset


def prepare_run(recipe: Recipe) -> PreparedRun:
    """Build the recipe's model (with its PEFT adapters), load its data, build the index and encode it once before
    any step (the refresh callback would only do so with `refresh_steps > 0`)."""
    model_args, data_args, training_args = recipe.model, recipe.data, recipe.training
    set_seed(training_args.seed)
    from .models import build_model  # loads transformers' model classes: only when a run starts

    model, tokenizers = build_model(model_args)
    if recipe.peft.use_peft:
        apply_peft(model, recipe.peft)
    train_examples = load_examples(
        data_args, data_args.train_source, data_args.train_split, data_args.train_limit
    )
    index = build_index(data_args, model_args, tokenizers, train_examples)
    model.set_index(index)
    # ETRAG with k = 0 never reads the memory; it is kept (unencoded) for its labels, used by the evaluation.
    if model_args.n_docs > 0:  # 0 is valid only for etrag's no-retrieval baseline
        refresh_index(
            model,
            batch_size=training_args.refresh_batch_size,
            step=0,
            show_progress=not training_args.disable_tqdm,
        )
    train = training_dataset(train_examples, tokenizers, model_args, index)
    eval_dataset = None
    if data_args.eval_source:
        eval_examples = load_examples(
            data_args, data_args.eval_source, data_args.eval_split, data_args.eval_limit
        )
        eval_dataset = training_dataset(eval_examples, tokenizers, model_args, index, in_memory=False)
    return PreparedRun(model, tokenizers, train, eval_dataset, train_examples)


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: EtragTrainingArguments,
    peft_args: PeftArguments | None = None,
    start: PreparedRun | None = None,
) -> dict[str, Any] | None:
    """Train one recipe; returns the test metrics (main process, with `do_predict` and a `test_source`), else
    `None`. Writes into `training_args.output_dir`: the model (`config.json`, `model.safetensors`), the tokenizers,
    `passage_index/`, `trainer_state.json`, `etrag_recipe.json` and the evaluation folder.

    `start`: train a copy of this prepared model instead of preparing one ([`prepare_run`], then the reader
    warm-up when `reader_warmup_steps` is set). It must come from a recipe with the same data and model arguments
    except which parts train (this recipe's `freeze_*` flags are applied to the copy): `hf-etrag demo` warms one
    reader up and starts its frozen and end-to-end runs from it."""
    recipe = Recipe(model_args, data_args, training_args, peft_args or PeftArguments())
    if start is None:
        start = prepare_run(recipe)
        if data_args.reader_warmup_steps:
            warm_up_reader(
                start.model, start.train, training_args, data_args.reader_warmup_steps, start.tokenizers
            )
    else:
        set_seed(training_args.seed)
        from .models import set_trainable_parts

        start = dataclasses.replace(start, model=copy.deepcopy(start.model))
        set_trainable_parts(start.model, model_args)
    model, tokenizers, train, eval_dataset = start.model, start.tokenizers, start.train, start.eval_dataset
    retrieves = model_args.n_docs > 0

    trainer = EtragTrainer(
        model, training_args, train_dataset=train, eval_dataset=eval_dataset, processing_class=tokenizers
    )
    if any(p.requires_grad for p in model.parameters()):
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    else:
        # Frozen retriever and frozen generator: the baseline of a frozen-LM recipe is the starting model itself.
        logger.warning(
            "Nothing is trainable (freeze_retriever and freeze_generator): evaluating the model as loaded."
        )
    model = trainer.etrag_model
    if (
        retrieves
        and _document_encoder_trained(model)
        and model.index.built_at_step != trainer.state.global_step
    ):
        # The stored embeddings lag the trained document encoder; the saved index must match the saved encoder.
        # (A refresh on the last step, `max_steps % refresh_steps == 0`, already made them match.)
        stats = refresh_index(
            model, batch_size=training_args.refresh_batch_size, step=trainer.state.global_step
        )
        logger.info("Final index refresh: %.1f s, staleness %.4f", stats["refresh_seconds"],
                    stats.get("refresh_staleness", 0.0))  # fmt: skip
    trainer.save_model()
    trainer.save_state()
    if not trainer.is_world_process_zero():
        return None
    recipe.save(training_args.output_dir)
    if not (training_args.do_predict and data_args.test_source):
        return None
    return evaluate_recipe_model(
        model,
        tokenizers,
        model_args,
        data_args,
        checkpoint_dir=training_args.output_dir,
        batch_size=training_args.per_device_eval_batch_size,
        show_progress=not training_args.disable_tqdm,
    )
