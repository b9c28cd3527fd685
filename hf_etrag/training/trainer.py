"""`EtragTrainer`: a `Trainer` whose loss retrieves inside the step with the current query encoder."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from ..adapters.checkpoint import is_adapter_checkpoint
from ..data.collator import EtragDataCollator
from ..files import INDEX_FOLDER
from ..hub.model_card import add_run_facts, card_data_from_model, write_model_card
from ..hub.push import create_model_repo, upload_model_folder
from ..modeling.model import EtragModel, EtragOutput
from ..modeling.tokenization import EtragTokenizers
from ..retrieval.fingerprint import encoder_fingerprint
from ..retrieval.index import PassageIndex
from .arguments import EtragTrainingArguments
from .callbacks import IndexRefreshCallback
from .checkpoints import clean_stale_checkpoints, resolve_resume_checkpoint, writing_checkpoint
from .resume import ResumedIndexCheck, restore_index

__all__ = ["EtragTrainer"]

logger = logging.getLogger(__name__)

# Parameters under these module names train at `retriever_learning_rate` (the posterior encoder of jsa/vrag too).
_RETRIEVER_PARTS = frozenset({"query_encoder", "doc_encoder", "posterior_encoder"})


def retrieval_statistics(
    output: EtragOutput, gold_passage_index: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Per-batch retrieval diagnostics: how peaked p(z|x) is and, with gold passages, whether it was found.

    0-d tensors on the model's device: read on the host only when logged (no device sync per step)."""
    if output.doc_scores is None or output.doc_scores.shape[-1] == 0:
        return {}  # nothing was retrieved (ETRAG with k = 0, the no-retrieval baseline)
    probs = torch.softmax(output.doc_scores.detach().float(), dim=-1)
    stats = {
        "retriever_entropy": -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean(),
        "retriever_top1_prob": probs.max(-1).values.mean(),
    }
    if gold_passage_index is not None and output.retrieved_doc_indices is not None:
        known = (gold_passage_index >= 0).to(probs.device)
        retrieved = output.retrieved_doc_indices.to(probs.device)
        hits = (retrieved == gold_passage_index.to(probs.device).unsqueeze(-1)).any(-1) & known
        # NaN when no example of the batch names its gold passage: left out of the logged mean
        stats["gold_in_top_k"] = hits.sum().float() / known.sum().float().where(known.any(), torch.nan)
    return stats


def mean_of_logged(values: list[torch.Tensor | float]) -> float | None:
    """The mean of a logging interval's values, read from the device once (NaN entries, batches that had no value,
    are left out); `None` when nothing remains."""
    if not values:
        return None
    device = next((v.device for v in values if isinstance(v, torch.Tensor)), torch.device("cpu"))
    stacked = torch.stack(
        [torch.as_tensor(v, dtype=torch.float32, device=device).reshape(()) for v in values]
    )
    kept = stacked[~torch.isnan(stacked)]
    return float(kept.mean()) if kept.numel() else None


def compile_parts(model: EtragModel, args: TrainingArguments) -> None:
    """`torch_compile` for an [`EtragModel`]: compile each network (query and document encoders, generator) in
    place, with dynamic shapes, instead of the whole model as the Trainer would. The step between them
    (FAISS search, token-id slicing on the host) would break a whole-model graph at every step; in-place
    `Module.compile` keeps parameter names, so checkpoints load without compiling. Widths vary with the batch: set
    `context_pad_multiple` (e.g. 64) so that the generator sees few distinct shapes."""
    options = {"backend": args.torch_compile_backend or "inductor", "dynamic": True}
    if args.torch_compile_mode is not None:
        options["mode"] = args.torch_compile_mode
    parts = [model.query_encoder, model.generator]
    if model.document_encoder is not model.query_encoder:
        parts.append(model.document_encoder)
    for part in parts:
        part.compile(**options)
    logger.info("torch_compile: compiled %d networks in place (%s).", len(parts), options)
    # The Trainer (accelerate's dynamo plugin) must not compile the whole model again.
    args.torch_compile, args.torch_compile_backend, args.torch_compile_mode = False, None, None


class EtragTrainer(Trainer):
    """Trains an [`EtragModel`] with any registered objective.

    Args:
        model: the joint retriever-generator.
        args: [`EtragTrainingArguments`]; `refresh_steps` / `refresh_on_epoch_end` add an
            [`IndexRefreshCallback`] automatically.
        index: the passage index to attach to the model (optional if one is attached already).
        Everything else is passed to `transformers.Trainer` unchanged.

    Logs each loss term of the objective and retrieval statistics (`retriever_entropy`,
    `retriever_top1_prob`, and `gold_in_top_k` when the data names gold passages), averaged per logging
    interval, with an `eval_` prefix during evaluation; and each optimiser parameter group's learning rate in
    the last step: `learning_rate` is the main group's (the generator's and the objective's own layers, at
    `args.learning_rate`), `learning_rate_retriever` the encoders' (at `retriever_learning_rate`), and
    `learning_rate_<name>` any other group that carries a `"name"` (a user's own optimiser).
    """

    def __init__(
        self,
        model: EtragModel,
        args: EtragTrainingArguments | None = None,
        index: PassageIndex | None = None,
        data_collator: Any = None,
        **kwargs: Any,
    ) -> None:
        if index is not None:
            model.set_index(index)
        if data_collator is None:
            data_collator = EtragDataCollator(model.retriever_pad_id, model.generator_pad_id)
        if args is not None and args.torch_compile:
            compile_parts(model, args)
        super().__init__(model=model, args=args, data_collator=data_collator, **kwargs)
        self._metrics: dict[str, dict[str, list[torch.Tensor | float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }
        self._add_refresh_callback()
        self._check_vocabularies()
        # Non-finite loss bookkeeping: micro-batches of the current optimiser step (all, skipped), bad steps in a
        # row, and bad steps in total (logged as `nonfinite_steps`).
        self._step_micro_batches = self._step_skipped = self._nonfinite_streak = self._nonfinite_total = 0
        # Each parameter group's learning rate in the last optimiser step (read before the scheduler moves on).
        self._step_group_rates: list[float] | None = None

    def _add_refresh_callback(self) -> None:
        refresh_steps = getattr(self.args, "refresh_steps", 0)
        on_epoch_end = getattr(self.args, "refresh_on_epoch_end", False)
        already = any(isinstance(cb, IndexRefreshCallback) for cb in self.callback_handler.callbacks)
        if (refresh_steps or on_epoch_end) and not already:
            self.add_callback(
                IndexRefreshCallback(
                    refresh_steps=refresh_steps,
                    refresh_on_epoch_end=on_epoch_end,
                    batch_size=getattr(self.args, "refresh_batch_size", 128),
                )
            )

    def _check_vocabularies(self) -> None:
        """Token ids that reach past an embedding matrix fail deep inside `nn.Embedding` with an index error;
        check the tokenizers and the datasets' id columns against the model's vocabularies here instead."""
        model = self.etrag_model
        if isinstance(self.processing_class, EtragTokenizers):
            model.check_tokenizers(self.processing_class)
        datasets = [("train_dataset", self.train_dataset)]
        evals = self.eval_dataset if isinstance(self.eval_dataset, dict) else {"": self.eval_dataset}
        datasets += [(f"eval_dataset{f'[{name!r}]' if name else ''}", data) for name, data in evals.items()]
        for label, dataset in datasets:
            if not isinstance(dataset, Dataset):
                continue  # iterable/torch datasets: the corpus and tokenizer checks still apply
            columns = dataset.column_names
            parts = [("input_ids", "query_encoder"), ("labels", "generator")]
            # The query reaches the generator as `generator_input_ids`, or as `input_ids` when tokenizers are shared.
            query_for_generator = "generator_input_ids" if "generator_input_ids" in columns else "input_ids"
            parts.append((query_for_generator, "generator"))
            for column, part in parts:
                if column in columns and len(dataset):
                    max_id = pc.max(pc.list_flatten(dataset.with_format("arrow")[column])).as_py()
                    if max_id is not None:
                        model.check_token_range(part, int(max_id), f"Column `{column}` of the {label}")

    @property
    def etrag_model(self) -> EtragModel:
        return self.accelerator.unwrap_model(self.model)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """`Trainer.train`, resuming whole checkpoints only (`hf_etrag.training.checkpoints`).

        `resume_from_checkpoint`: a checkpoint folder, or `True`, `"true"` or `"latest"` for the newest complete
        `checkpoint-N` of `output_dir` (an interrupted save is never picked; an explicit path to one is refused).
        What interrupted saves left in `output_dir` is removed first. The checkpoint's `passage_index/` is restored
        (embeddings, FAISS index and the step it was built at): the run continues on the index the interrupted run
        had, with no re-encoding, and the refresh schedule continues where it was; an index that does not belong
        to the checkpoint is rebuilt (see `hf_etrag.training.resume`). A checkpoint that already reached
        `max_steps` takes no further step."""
        if self.args.should_save:
            removed = clean_stale_checkpoints(self.args.output_dir)
            if removed:
                logger.warning(
                    "Removed what interrupted checkpoint saves left in %s: %s.", self.args.output_dir, removed
                )
        self.accelerator.wait_for_everyone()
        checkpoint = resolve_resume_checkpoint(resume_from_checkpoint, self.args.output_dir)
        if checkpoint is not None:
            self._restore_index(checkpoint)
        return super().train(resume_from_checkpoint=checkpoint, **kwargs)

    def _restore_index(self, checkpoint: str) -> None:
        check = next(
            (cb for cb in self.callback_handler.callbacks if isinstance(cb, ResumedIndexCheck)), None
        )
        if check is None:
            check = ResumedIndexCheck()
            self.add_callback(check)
        restore_index(self.etrag_model, checkpoint, self.callback_handler.callbacks, check)

    def _run_epoch(self, *args: Any, **kwargs: Any) -> Any:
        # transformers (5.x) runs the rest of the resumed epoch before checking `max_steps`: a checkpoint saved at
        # `max_steps` mid-epoch would take one more optimiser step when resumed.
        if 0 < self.state.max_steps <= self.state.global_step:
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        """`Trainer._save_checkpoint` as one unit (`hf_etrag.training.checkpoints.writing_checkpoint`): the folder
        is marked in progress until every file of every process is written, and older checkpoints are rotated out
        (`save_total_limit`) only after that."""
        run_dir = self._get_output_dir(trial=trial)
        folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        limit = self.args.save_total_limit
        with writing_checkpoint(
            folder, self.state.global_step, self.args.should_save, self.accelerator.wait_for_everyone
        ):
            self.args.save_total_limit = None  # no rotation while the new checkpoint is incomplete
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self.args.save_total_limit = limit
        if self.args.should_save:
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """Like `Trainer.create_optimizer`, with `retriever_learning_rate` for the encoders' parameters."""
        retriever_lr = getattr(self.args, "retriever_learning_rate", None)
        if self.optimizer is not None or retriever_lr is None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = defaultdict(list)
        for name, param in opt_model.named_parameters():
            if param.requires_grad:
                is_retriever = not _RETRIEVER_PARTS.isdisjoint(name.split("."))
                groups[(is_retriever, name in decay)].append(param)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        param_groups = [
            {
                "params": params,
                "weight_decay": self.args.weight_decay if decayed else 0.0,
                "lr": retriever_lr if is_retriever else self.args.learning_rate,
            }
            for (is_retriever, decayed), params in groups.items()
        ]
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | None = None,
    ):
        outputs: EtragOutput = model(**inputs)
        loss = outputs.loss
        if model.training and loss is not None and not self._finite_on_every_rank(loss):
            loss = self._skip_backward(model, loss)
            return (loss, outputs) if return_outputs else loss
        gold = inputs.get("gold_passage_index")
        mode = "train" if model.training else "eval"
        metrics = self._metrics[mode]
        # Kept as tensors and read at logging time: no host sync per step.
        for name, value in (outputs.loss_terms or {}).items():
            metrics[name].append(value.detach().float().mean())
        for name, value in retrieval_statistics(outputs, gold).items():
            metrics[name].append(value)
        return (loss, outputs) if return_outputs else loss

    # ---- non-finite losses ------------------------------------------------------------------------------
    def training_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """`Trainer.training_step` that survives NaN/inf: a micro-batch whose loss is non-finite gets no backward
        (see [`compute_loss`]); on the optimiser step's last micro-batch the gradient is checked too, and a step
        with nothing finite left is dropped (gradients set to `None`, so the optimiser moves no weight and its
        moments stay as they were; the LR schedule still advances). More than `max_nonfinite_steps` such steps in a
        row raise. The returned loss stays NaN for the skipped micro-batch, which the Trainer's
        `logging_nan_inf_filter` keeps out of the logged loss."""
        self._step_micro_batches += 1
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.sync_gradients:
            self._end_optimizer_step(model)
            # The rates the coming `optimizer.step()` applies: logged with it, as transformers logs
            # `learning_rate` (read before `lr_scheduler.step()`).
            if self.optimizer is not None:
                self._step_group_rates = [float(group["lr"]) for group in self.optimizer.param_groups]
        return loss

    def _finite_on_every_rank(self, loss: torch.Tensor) -> bool:
        # Every rank must take the same branch: DDP needs all of them in the backward's all-reduce, and a
        # stop must happen everywhere at once, so one rank's NaN makes every rank skip.
        bad = (~torch.isfinite(loss.detach())).any().float().reshape(1)
        if self.args.world_size > 1:
            bad = self.accelerator.reduce(bad, reduction="sum")
        return not bool(bad.item())

    def _skip_backward(self, model: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
        """A stand-in with the same (non-finite) value whose backward gives every parameter an exact zero: the
        Trainer's backward runs as usual (DDP sees every parameter), but nothing flows through the NaN graph."""
        self._step_skipped += 1
        logger.warning(
            "Non-finite loss (%s) at step %d: this micro-batch gets no backward.",
            float(loss.detach().float().mean()),
            self.state.global_step + 1,
        )
        trainable = [p for p in model.parameters() if p.requires_grad]
        return loss.detach() + sum((p.sum() * 0.0 for p in trainable), torch.zeros((), device=loss.device))

    def _end_optimizer_step(self, model: torch.nn.Module) -> None:
        skipped, micro_batches = self._step_skipped, self._step_micro_batches
        self._step_skipped = self._step_micro_batches = 0
        bad_gradient = False
        if skipped < micro_batches:
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            bad_gradient = bool(grads) and not bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
            if bad_gradient:
                logger.warning(
                    "Non-finite gradient at step %d: the step is not applied.", self.state.global_step + 1
                )
        if not skipped and not bad_gradient:
            self._nonfinite_streak = 0
            return
        if bad_gradient or skipped == micro_batches:
            model.zero_grad(set_to_none=True)  # optimisers skip parameters without a gradient
        self._nonfinite_streak += 1
        self._nonfinite_total += 1
        if self._nonfinite_streak > self.args.max_nonfinite_steps:
            raise RuntimeError(
                f"Training stopped at step {self.state.global_step + 1}: the loss or gradient was NaN/inf in "
                f"{self._nonfinite_streak} optimiser steps in a row, more than `max_nonfinite_steps`="
                f"{self.args.max_nonfinite_steps}. Lower `learning_rate`, set `max_grad_norm`, look for records with "
                "empty targets, or raise `max_nonfinite_steps`."
            )

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        # Generation metrics (EM, F1) come from `hf_etrag.evaluation.checkpoint.evaluate_model`; the eval loop reports loss + retrieval.
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        for name, values in self._metrics[mode].items():
            mean = mean_of_logged(values)
            if mean is not None:
                logs[prefix + name] = mean
        self._metrics[mode].clear()
        if mode == "train":
            if "learning_rate" in logs:
                logs.update(self.group_learning_rates())
            if self._nonfinite_total:
                logs["nonfinite_steps"] = self._nonfinite_total
            for callback in self.callback_handler.callbacks:
                if isinstance(callback, IndexRefreshCallback):
                    logs.update(callback.pop_logs())
        super().log(logs, start_time)

    def group_learning_rates(self) -> dict[str, float]:
        """Each parameter group's learning rate in the last optimiser step, by the group's role:
        `{"learning_rate": main group's, "learning_rate_retriever": ..., "learning_rate_<name>": ...}`. A group whose
        parameters all belong to the encoders (or jsa/vrag's posterior encoder) is `retriever`; a group with a
        `"name"` key goes by that name; every other group is the main one (generator, objective layers). Roles come
        from the parameters, not the group order, so optimiser states restored from older checkpoints log
        correctly. A run without a main group (frozen generator) logs its first group's rate as `learning_rate`,
        as transformers does."""
        if self.optimizer is None:
            return {}
        groups = self.optimizer.param_groups
        rates = self._step_group_rates
        if rates is None or len(rates) != len(groups):
            rates = [float(group["lr"]) for group in groups]
        retriever = {
            id(p)
            for name, p in self.model.named_parameters()
            if not _RETRIEVER_PARTS.isdisjoint(name.split("."))
        }
        named: dict[str, float] = {}
        for group, rate in zip(groups, rates, strict=True):
            if group.get("name"):
                role = str(group["name"])
            elif group["params"] and all(id(p) in retriever for p in group["params"]):
                role = "retriever"
            else:
                role = "main"
            named.setdefault(role, rate)
        logs = {"learning_rate": named.get("main", rates[0])} if rates else {}
        logs.update({f"learning_rate_{role}": rate for role, rate in named.items() if role != "main"})
        return logs

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """`Trainer._save`, plus the passage index (`save_index_with_checkpoints`) with the fingerprint of the
        document encoder saved next to it; the model's config records the corpus (`config.passage_index`), so that
        an evaluation or a resume can tell whether an index is the one it was trained with."""
        model = self.etrag_model
        index = model.attached_index
        if index is not None:
            model.config.passage_index = {"corpus": index.corpus_fingerprint, "n_passages": len(index)}
        super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if (
            self.args.should_save
            and getattr(self.args, "save_index_with_checkpoints", False)
            and index is not None
        ):
            saved_with = encoder_fingerprint(model, state_dict) if index.embeddings is not None else None
            index.save(os.path.join(output_dir, INDEX_FOLDER), saved_with_encoder=saved_with)

    # ---- adapters, Hub and model card (hf_etrag.adapters.checkpoint, hf_etrag.hub.push, hf_etrag.hub.model_card) ----------
    def _load_from_checkpoint(
        self, resume_from_checkpoint: str, model: torch.nn.Module | None = None
    ) -> None:
        # transformers' loader knows nothing of the `*_adapter/` folders: it would restore the other weights and
        # leave the adapters as they were initialised.
        if is_adapter_checkpoint(resume_from_checkpoint):
            self.etrag_model.load_adapter_checkpoint(resume_from_checkpoint)
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self) -> None:
        if is_adapter_checkpoint(self.state.best_model_checkpoint):
            self.etrag_model.load_adapter_checkpoint(self.state.best_model_checkpoint)
            return
        super()._load_best_model()

    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | list[str] | None = None,
        tags: str | list[str] | None = None,
        language: str | list[str] | None = None,
        license: str | None = None,
        has_index: bool = False,
    ) -> None:
        """Write `output_dir/README.md`: objective, retriever and generator bases, PEFT adapters, training data
        (`dataset_name`), hyperparameters, the last evaluation's metrics and a usage snippet; see
        `model_cards/README.md`. `has_index`: the card tells users to load the pushed `passage_index/`."""
        if not self.is_world_process_zero():
            return
        output_dir = Path(self.args.output_dir)
        model_name = model_name or (self.args.hub_model_id or output_dir.name).split("/")[-1]
        model = self.etrag_model
        repo_id = getattr(self, "hub_model_id", None) or self.args.hub_model_id or model_name
        data = card_data_from_model(
            model, model_name, repo_id=repo_id, tags=[tags] if isinstance(tags, str) else tags
        )
        shared = getattr(self.processing_class, "shared", None)
        add_run_facts(
            data,
            datasets=[dataset_name] if isinstance(dataset_name, str) else list(dataset_name or []),
            has_index=has_index,
            shared_tokenizer=shared if isinstance(shared, bool) else None,
            trained_parts=sorted(
                {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
            ),
            training_args=self.args,
            log_history=self.state.log_history,
            output_dir=output_dir,
        )
        data.language, data.license = language, license
        write_model_card(data, output_dir)

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        push_index: bool = False,
        **kwargs: Any,
    ):
        """Save the model (with the tokenizers of an `EtragTokenizers` `processing_class`), write the model card
        and upload exactly the files listed in `hf_etrag.hub.push` to `args.hub_model_id` (default: the name of
        `output_dir`); `push_index` adds `passage_index/`. `kwargs` go to [`create_model_card`].

        `Trainer.push_to_hub`'s steps (save, card, upload) with that file list, so that `training_args.bin` (a
        pickle) and other run files stay local. Returns `None` off the main process."""
        args = self.args
        self.callback_handler.on_push_begin(args, self.state, self.control)
        token = token if token is not None else args.hub_token
        name = args.hub_model_id or Path(args.output_dir).absolute().name
        kwargs.setdefault("model_name", name.split("/")[-1])
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        private = private if private is not None else args.hub_private_repo
        # Created before the card is written: the card's usage snippet names the full repo id.
        self.hub_model_id = create_model_repo(name, private=private, token=token)
        self.create_model_card(has_index=push_index, **kwargs)
        self._finish_current_push()  # a checkpoint push still running must not race this commit
        return upload_model_folder(
            args.output_dir,
            self.hub_model_id,
            push_index=push_index,
            commit_message=commit_message,
            token=token,
            revision=revision if revision is not None else args.hub_revision,
            blocking=blocking,
        )
