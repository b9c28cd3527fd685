"""`EtragTrainer`: a `Trainer` whose loss retrieves inside the step with the current query encoder."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import torch
from transformers import Trainer

from .callbacks import IndexRefreshCallback
from .data.collator import EtragDataCollator
from .modeling_etrag import EtragModel, EtragOutput
from .retrieval.index import PassageIndex
from .training_args import EtragTrainingArguments

__all__ = ["EtragTrainer"]

INDEX_FOLDER = "passage_index"
# Parameters under these module names train at `retriever_learning_rate` (the posterior encoder of jsa/vrag too).
_RETRIEVER_PARTS = frozenset({"query_encoder", "doc_encoder", "posterior_encoder"})


def retrieval_statistics(output: EtragOutput, gold_passage_index: torch.Tensor | None) -> dict[str, float]:
    """Per-batch retrieval diagnostics: how peaked p(z|x) is and, with gold passages, whether it was found."""
    probs = torch.softmax(output.doc_scores.detach().float(), dim=-1)
    stats = {
        "retriever_entropy": float(-(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()),
        "retriever_top1_prob": float(probs.max(-1).values.mean()),
    }
    if gold_passage_index is not None:
        known = gold_passage_index >= 0
        if bool(known.any()):
            hits = (output.retrieved_doc_indices[known] == gold_passage_index[known].unsqueeze(-1)).any(-1)
            stats["gold_in_top_k"] = float(hits.float().mean())
    return stats


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
    interval, with an `eval_` prefix during evaluation.
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
            data_collator = EtragDataCollator(model._retriever_pad, model.generator_pad_id)
        super().__init__(model=model, args=args, data_collator=data_collator, **kwargs)
        self._metrics: dict[str, dict[str, list[float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }
        self._add_refresh_callback()

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

    @property
    def etrag_model(self) -> EtragModel:
        return self.accelerator.unwrap_model(self.model)

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
        gold = inputs.get("gold_passage_index")
        mode = "train" if model.training else "eval"
        metrics = self._metrics[mode]
        for name, value in (outputs.loss_terms or {}).items():
            metrics[name].append(float(value.float().mean()))
        for name, value in retrieval_statistics(outputs, gold).items():
            metrics[name].append(value)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        # Generation metrics (EM, F1) come from `hf_etrag.evaluation`; the eval loop reports loss + retrieval.
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        for name, values in self._metrics[mode].items():
            if values:
                logs[prefix + name] = sum(values) / len(values)
        self._metrics[mode].clear()
        if mode == "train":
            for callback in self.callback_handler.callbacks:
                if isinstance(callback, IndexRefreshCallback):
                    logs.update(callback.pop_logs())
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        index = self.etrag_model._index
        if (
            self.args.should_save
            and getattr(self.args, "save_index_with_checkpoints", False)
            and index is not None
        ):
            index.save(os.path.join(output_dir, INDEX_FOLDER))
