"""The `train` and `evaluate` subcommands of `hf-etrag` (registered by `hf_etrag.cli`).

```bash
hf-etrag train recipes/squad_open_jsa.yaml --max_steps 10        # flags after the file override it
accelerate launch -m hf_etrag.cli train recipes/squad_open_jsa.yaml
hf-etrag evaluate runs/squad_open_jsa --limit 200                 # metrics.json + report.md + figures
```
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from .help import DefaultsHelpFormatter

__all__ = [
    "TRACEBACK_ENV",
    "add_recipe_commands",
    "expected_failure",
    "report_failures",
    "run_recipe_command",
]

#: Set to 1 to see the traceback of an expected failure too (they print one line by default).
TRACEBACK_ENV = "HF_ETRAG_TRACEBACK"

# Printed after a run: the headline figures of each task, where present.
_HEADLINE = (
    "micro_f1",
    "exact_match",
    "f1",
    "unigram_f1",
    "rouge_l",
    "recall@1",
    "recall@5",
    "mrr",
    "retrieved_same_label",
)


def add_recipe_commands(commands: Any) -> None:
    """Add `train` and `evaluate` to the `hf-etrag` subparsers."""
    train = commands.add_parser(
        "train",
        add_help=False,  # `--help` lists the recipe keys by group (`hf_etrag.recipes.help`), `--help-all` all keys
        help="Train a recipe (YAML; flags after it override it), save the model and evaluate the test split.",
    )
    train.add_argument(
        "config", nargs="?", default=None, help="Recipe YAML file, e.g. recipes/semeval_etrag.yaml."
    )
    # The recipe's own flags (--max_steps 10 ...) are not declared here: `hf_etrag.cli.main` passes the arguments
    # this parser does not know on as `args.overrides`, to the recipe parser.
    evaluate = commands.add_parser(
        "evaluate",
        formatter_class=DefaultsHelpFormatter,
        help="Score a model folder written by `hf-etrag train` on a test split: metrics.json and a Markdown report.",
    )
    evaluate.add_argument("checkpoint", help="Folder written by `hf-etrag train` (its output_dir).")
    evaluate.add_argument("--output_dir", default=None, help="Default: <checkpoint>/evaluation-<split>.")
    evaluate.add_argument(
        "--test_source", default=None, help="Test data (default: the recipe's test_source)."
    )
    evaluate.add_argument(
        "--test_split", default=None, help="Split of a folder or Hub source (default: the recipe's)."
    )
    evaluate.add_argument(
        "--limit", type=int, default=None, help="Score the first N examples (default: test_limit)."
    )
    evaluate.add_argument(
        "--generation_limit",
        type=int,
        default=None,
        help="Generate for the first N of them (default: the recipe's test_generation_limit).",
    )
    evaluate.add_argument(
        "--decoding",
        choices=("sequence", "sequence_fast", "token"),
        default=None,
        help="sequence (RAG-Sequence thorough), sequence_fast (fast decoding, ~K times cheaper) or token "
        "(RAG-Token greedy). Default: the recipe's `decoding`, else the objective's.",
    )
    evaluate.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="Queries per batch (default: the recipe's per_device_eval_batch_size).",
    )
    evaluate.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available).")
    evaluate.add_argument("--no-progress", action="store_true", help="Hide progress bars.")


def _headline(metrics: dict[str, Any]) -> str:
    shown = [f"{name}={metrics[name]:.4f}" for name in _HEADLINE if isinstance(metrics.get(name), float)]
    return f"{metrics['task']} on {metrics['split']} ({metrics['n_examples']} examples): " + " ".join(shown)


def _train(args: argparse.Namespace) -> int:
    overrides = list(getattr(args, "overrides", []))
    if any(flag in ("-h", "--help", "--help-all") for flag in overrides):
        from .help import format_train_help

        print(format_train_help(show_all="--help-all" in overrides), end="")
        return 0
    from .arguments import parse_recipe

    recipe = parse_recipe(args.config, overrides)  # every value checked: nothing is loaded yet
    from .lock import output_dir_lock
    from .models import check_model_sources
    from .pipeline import run_training

    check_model_sources(recipe.model)  # a missing model folder fails before output_dir is made
    with output_dir_lock(recipe.training.output_dir):  # a second run into this output_dir is refused
        metrics = run_training(recipe.model, recipe.data, recipe.training, recipe.peft)
    if metrics is not None:
        print(_headline(metrics))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(
        args.checkpoint,
        output_dir=args.output_dir,
        test_source=args.test_source,
        test_split=args.test_split,
        limit=args.limit,
        generation_limit=args.generation_limit,
        batch_size=args.batch_size,
        device=args.device,
        show_progress=not args.no_progress,
        decoding=args.decoding,
    )
    print(json.dumps({k: v for k, v in metrics.items() if k != "per_relation"}, indent=2))
    print(_headline(metrics))
    return 0


def expected_failure(error: BaseException) -> str | None:
    """The one-line message of a failure the user can fix (a bad recipe, flag, path or file), else `None` (a bug:
    its traceback is shown).

    Expected: `ValueError` (every check of hf-etrag raises one, or a subclass: `OutputFolderError`,
    `IndexMismatchError`, `NonFiniteVectorsError`, `AdapterBaseMismatchError`, a `json.JSONDecodeError`, a
    `UnicodeDecodeError`), `OSError` (a missing, unreadable or wrong-kind path; a full disk), a YAML syntax error
    and a corrupt safetensors file."""
    import yaml

    if isinstance(error, UnicodeDecodeError):
        text = f"a file is not UTF-8 text ({error}). Fix: save it as UTF-8."
    elif (
        isinstance(error, OSError)
        and error.strerror
        and error.filename is not None
        and str(error).startswith("[")
    ):
        # A bare `open()`/`stat()` failure: `[Errno 2] No such file or directory: 'x'`; say what to check.
        fix = {
            FileNotFoundError: f"check the path (a relative path resolves against {os.getcwd()})",
            PermissionError: "check the file's permissions, or choose a path you can read and write",
            IsADirectoryError: "give a file there, not a folder",
            NotADirectoryError: "a part of the path is a file, not a folder: fix the path",
        }.get(type(error), "check the path and the disk")
        text = f"{error.strerror}: {error.filename!s}. Fix: {fix}."
    elif isinstance(error, (ValueError, OSError, yaml.YAMLError)):
        text = str(error)
    elif type(error).__module__.split(".")[0] in ("safetensors", "safetensors_rust"):
        text = (
            f"a safetensors weights file is corrupt or truncated ({type(error).__name__}: {error}). Fix: copy or "
            "save the model again (`save_pretrained`), or resume from an earlier checkpoint."
        )
    else:
        return None
    return " ".join(text.split()) or type(error).__name__


def report_failures(command: str, run: Callable[[], int | None]) -> int:
    """Run `run()`; an expected failure ([`expected_failure`]) prints `hf-etrag COMMAND: message` on one line to
    stderr and returns 2 (with its traceback first when `HF_ETRAG_TRACEBACK=1`); anything else propagates."""
    try:
        return run() or 0
    except Exception as error:
        message = expected_failure(error)
        if message is None:
            raise
        if os.environ.get(TRACEBACK_ENV, "").lower() in ("1", "true", "yes"):
            traceback.print_exc()
        print(f"hf-etrag {command}: {message}", file=sys.stderr)
        return 2


def run_recipe_command(args: argparse.Namespace) -> int:
    """Run `train` or `evaluate`; a bad recipe, flag value, path or data file exits with status 2 and one line."""
    return report_failures(args.command, lambda: _train(args) if args.command == "train" else _evaluate(args))
