"""Model cards: the facts of a trained [`EtragModel`] gathered into [`EtragCardData`], rendered from the packaged
template `hf_etrag/hub/templates/model_card.md` (field reference: `model_cards/README.md` in the repository).

[`card_data_from_model`] reads what the model knows (objective, bases, PEFT adapters, retrieval settings);
[`add_run_facts`] adds what the trainer hands it as plain data: datasets, hyperparameters that differ from
`TrainingArguments`' defaults, and the metrics of the last evaluation (the trainer's log history, and
`metrics.json` in `output_dir` when `hf-etrag evaluate` wrote one). Nothing here calls back into the trainer.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from importlib import metadata
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from huggingface_hub import ModelCardData

from ..adapters.apply import adapter_parts
from ..adapters.checkpoint import adapter_base_source, describe_adapter_base
from ..atomic import OutputFolderError
from ..files import METRICS_FILE, MODEL_CARD_FILE

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "EtragCardData",
    "add_run_facts",
    "card_data_from_model",
    "render_model_card",
    "write_model_card",
]

# Always shown, even at their defaults: what a reader needs to reproduce a run.
CORE_HYPERPARAMETERS = (
    "learning_rate",
    "retriever_learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "seed",
    "refresh_steps",
)
# Never shown: secrets, machine-specific paths and logging plumbing.
_HIDDEN = ("token", "output_dir", "logging_dir", "hub_", "push_to_hub", "report_to", "disable_tqdm")
_EVAL_BOOKKEEPING = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch", "step")
# Settings in `metrics.json` that only mean something on the machine that wrote it.
_LOCAL_SETTINGS = ("checkpoint",)
_VERSIONED = ("hf-etrag", "transformers", "torch", "peft", "datasets", "faiss-cpu", "huggingface_hub")


@dataclass
class EtragCardData:
    """Everything a card states. Fields the user sets come first; the builders fill the rest."""

    model_name: str
    repo_id: str | None = None
    datasets: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    language: str | list[str] | None = None
    license: str | None = None
    shared_tokenizer: bool | None = None  # None: unknown, the usage snippet then assumes one shared tokenizer
    has_index: bool = False
    example_question: str = "Who wrote the passage about this?"
    # From the model.
    objective: str = ""
    objective_kwargs: dict[str, Any] = field(default_factory=dict)
    auxiliary_losses: dict[str, float] = field(default_factory=dict)
    retrieval: dict[str, Any] = field(default_factory=dict)
    parts: list[dict[str, str]] = field(default_factory=list)
    peft: dict[str, str] = field(default_factory=dict)  # part -> its PEFT method and options
    citations: list[str] = field(default_factory=list)
    # From the training run.
    trained_parts: list[str] | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    def base_models(self) -> list[str]:
        """Bases that look like Hub ids (local folders mean nothing to a reader), for the card's metadata."""
        return sorted({row["base"] for row in self.parts if _is_hub_id(row["base"])})


def card_data_from_model(
    model: PreTrainedModel, model_name: str, repo_id: str | None = None, tags: list[str] | None = None
) -> EtragCardData:
    """Card facts that the model (an [`EtragModel`]) itself holds: objective, retrieval settings, bases, adapters,
    citations."""
    config = model.config
    adapted = adapter_parts(model)
    parts = (
        ["query_encoder", "generator"]
        if config.shared_encoders
        else ["query_encoder", "doc_encoder", "generator"]
    )
    rows, peft = [], {}
    for name in parts:
        base = describe_adapter_base(config.adapter_bases.get(name)) or _recorded_base(getattr(config, name))
        if name in adapted:
            base = base or adapted[name].get_base_model().name_or_path
            peft_config = adapted[name].peft_config[adapted[name].active_adapter]
            peft[name] = _peft_summary(peft_config)
            weights = f"{peft_config.peft_type.value} adapters (`{name}_adapter/`)"
            named = (
                adapted[name].get_base_model().name_or_path
                or adapter_base_source(config.adapter_bases.get(name))[0]
            )
            weights += " only" if named else " + its frozen base (`model.safetensors`)"
        else:
            weights = "full (`model.safetensors`)"
        label = "query + document encoder" if name == "query_encoder" and config.shared_encoders else name
        kind = getattr(config, name).model_type
        rows.append(
            {
                "part": f"{label} ({kind})",
                "base": base or "not recorded (built from a config)",
                "weights": weights,
            }
        )
    citations = [type(model.objective).citation] + [
        type(loss).citation for loss in model.auxiliary_losses.values()
    ]
    return EtragCardData(
        model_name=model_name,
        repo_id=repo_id,
        tags=sorted({"hf-etrag", "retrieval-augmented-generation", config.objective, *(tags or [])}),
        objective=config.objective,
        objective_kwargs=dict(config.objective_kwargs),
        auxiliary_losses=dict(config.auxiliary_losses),
        retrieval={
            "n_docs": config.n_docs,
            "pooling": config.pooling,
            "similarity": config.similarity,
            "temperature": config.temperature,
            "shared_encoders": config.shared_encoders,
            "train_doc_encoder": config.train_doc_encoder,
        },
        parts=rows,
        peft=peft,
        citations=list(dict.fromkeys(c.strip() for c in citations if c and c.strip())),
        versions=_versions(),
    )


def add_run_facts(
    data: EtragCardData,
    *,
    datasets: list[str] | None = None,
    has_index: bool = False,
    shared_tokenizer: bool | None = None,
    trained_parts: list[str] | None = None,
    training_args: Any = None,
    log_history: list[dict[str, Any]] | None = None,
    output_dir: str | Path | None = None,
) -> EtragCardData:
    """Add the facts of a training run, handed over as plain data by [`EtragTrainer.create_model_card`]:
    datasets, the tokenizer set-up, the trained parts, hyperparameters (from `training_args`) and the last
    evaluation (`log_history`, and `output_dir/metrics.json`)."""
    data.datasets = list(datasets or [])
    data.has_index = has_index
    data.shared_tokenizer = shared_tokenizer
    data.trained_parts = trained_parts
    if training_args is not None:
        data.hyperparameters = training_hyperparameters(training_args)
    if output_dir is not None:
        data.evaluations = last_evaluations(list(log_history or []), Path(output_dir))
    return data


def write_model_card(data: EtragCardData, output_dir: str | Path) -> Path:
    """Render `data` into `output_dir/README.md` (written whole: a temporary file, then renamed). An existing
    README.md is replaced only when it is an earlier hf-etrag card (`library_name: hf-etrag` in its metadata);
    any other is refused with `hf_etrag.atomic.OutputFolderError`."""
    output_dir = Path(output_dir)
    path = output_dir / MODEL_CARD_FILE
    if path.exists() and not _is_etrag_card(path):
        raise OutputFolderError(
            f"Refusing to write the model card to {path}: that README.md is not an hf-etrag model card (no "
            "`library_name: hf-etrag` in its metadata), so writing the card would replace a file that hf-etrag did "
            "not write. Nothing was written. Move that README.md elsewhere, or train into a new or empty `output_dir`."
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{MODEL_CARD_FILE}.tmp")
    partial.write_text(render_model_card(data), encoding="utf-8")
    partial.replace(path)
    return path


def _is_etrag_card(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    header = re.match(r"---\n(.*?)\n---\n", text, re.S)
    return bool(header) and re.search(r"^library_name:\s*hf-etrag\s*$", header.group(1), re.M) is not None


def training_hyperparameters(args: Any) -> dict[str, Any]:
    """The core hyperparameters plus every argument that differs from a default instance of `type(args)`."""
    values = args.to_dict()
    defaults = type(args)(output_dir=args.output_dir).to_dict()
    shown = {k: values[k] for k in CORE_HYPERPARAMETERS if k in values}
    shown.update({k: v for k, v in sorted(values.items()) if v != defaults.get(k) and k not in shown})
    return {k: v for k, v in shown.items() if not any(hidden in k for hidden in _HIDDEN)}


def last_evaluations(log_history: list[dict[str, Any]], output_dir: Path) -> list[dict[str, Any]]:
    """The metrics of the last `evaluate` call in the Trainer's log, and those of every `metrics.json` that
    `hf-etrag evaluate` left in `output_dir` (its default `evaluation-<split>/`, or `output_dir` itself)."""
    evaluations = []
    entries = [entry for entry in log_history if any(key.startswith("eval_") for key in entry)]
    if entries:
        last = entries[-1]
        metrics = {
            k: _fmt(v) for k, v in last.items() if k.startswith("eval_") and k not in _EVAL_BOOKKEEPING
        }
        evaluations.append(
            {"source": f"the Trainer's last evaluation (step {last.get('step', '?')})", "metrics": metrics}
        )
    for metrics_file in [output_dir / METRICS_FILE, *sorted(output_dir.glob(f"evaluation-*/{METRICS_FILE}"))]:
        if metrics_file.is_file():
            values = json.loads(metrics_file.read_text(encoding="utf-8"))
            flat = {k: v for k, v in _flatten(values).items() if k not in _LOCAL_SETTINGS}
            source = metrics_file.relative_to(output_dir).as_posix()
            evaluations.append({"source": f"`{source}` (`hf-etrag evaluate`)", "metrics": flat})
    return evaluations


def render_model_card(data: EtragCardData) -> str:
    """The card's Markdown (YAML metadata header included) from the packaged template."""
    card_data = ModelCardData(
        model_name=data.model_name,
        base_model=data.base_models() or None,
        datasets=[name for name in data.datasets if _is_hub_id(name)] or None,
        tags=data.tags,
        language=data.language,
        license=data.license,
        library_name="hf-etrag",
    )
    environment = jinja2.Environment(
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined
    )
    template = environment.from_string(
        files("hf_etrag.hub").joinpath("templates/model_card.md").read_text("utf-8")
    )
    fields = {k: getattr(data, k) for k in data.__dataclass_fields__}
    fields["repo_id"] = data.repo_id or data.model_name
    return template.render(card_data=card_data.to_yaml(), **fields)


def _is_hub_id(name: str) -> bool:
    """`name` reads as a Hub repo id (`org/name` or `name`) and is not a local folder."""
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None and not Path(name).exists()


def _recorded_base(config: Any) -> str:
    """The checkpoint a part's weights were loaded from, as its config remembers it; for an encoder-decoder warm
    started from two checkpoints, both."""
    if getattr(config, "name_or_path", None):
        return str(config.name_or_path)
    halves = [(h, getattr(getattr(config, h, None), "name_or_path", "")) for h in ("encoder", "decoder")]
    return ", ".join(f"{half}: {name}" for half, name in halves if name)


def _peft_summary(config: Any) -> str:
    """`LORA, r=8, lora_alpha=16, target_modules=['q_proj', 'v_proj']`: the options a reader needs to redo it."""
    keys = (
        "r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "modules_to_save",
        "feedforward_modules",
        "use_rslora",
        "use_dora",
    )
    options = [str(getattr(config.peft_type, "value", config.peft_type))]
    for key in keys:
        value = getattr(config, key, None)
        if value is None or value is False:
            continue
        options.append(f"{key}={sorted(value) if isinstance(value, (set, frozenset)) else value}")
    return ", ".join(options)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested `metrics.json` entries as `outer/inner` keys."""
    if not isinstance(value, dict):
        return {prefix: _fmt(value)}
    out: dict[str, Any] = {}
    for key, inner in value.items():
        out.update(_flatten(inner, f"{prefix}/{key}" if prefix else str(key)))
    return out


def _fmt(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return round(value, 4)
    return value


def _versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
