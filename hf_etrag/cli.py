"""The `hf-etrag` command line: `train`, `evaluate`, `demo` and `diagnose-gradients`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .recipes.commands import add_recipe_commands, report_failures, run_recipe_command
from .recipes.demo_settings import DemoSettings
from .recipes.help import DefaultsHelpFormatter

__all__ = ["main", "make_parser"]

DEFAULT_DIAGNOSED = ("rag_sequence", "rag_token", "jsa", "vrag", "vrag:estimator=sampled", "etrag")


def _installed_version() -> str:
    # The package metadata answers without importing torch and transformers (`hf_etrag.__version__` would).
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hf-etrag")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _GivenSize(argparse.Action):
    """Store the value and note that it was given: `--quick` changes only the sizes not given."""

    def __call__(
        self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


def make_parser() -> argparse.ArgumentParser:
    # Building the parser imports no torch, transformers or datasets: `hf-etrag --help` answers at once, and each
    # command imports what it runs.
    parser = argparse.ArgumentParser(
        prog="hf-etrag", description=__doc__, formatter_class=DefaultsHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    defaults, quick = DemoSettings(), DemoSettings.quick()
    demo = commands.add_parser(
        "demo",
        formatter_class=DefaultsHelpFormatter,
        help="Train on a synthetic knowledge base, frozen retriever vs end to end, and print recall@k and EM.",
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help=f"A smaller run ({quick.n_people} people, {quick.reader_warmup_steps} warm-up and {quick.max_steps} "
        "training steps) that still shows end to end beating frozen.",
    )
    for flag, field, text in (
        ("--people", "n_people", "People in the knowledge base (6 facts each)"),
        ("--steps", "max_steps", "Training steps per run"),
        ("--warmup-steps", "reader_warmup_steps", "Generator reading warm-up steps"),
    ):
        demo.add_argument(
            flag,
            type=int,
            dest=field,
            default=getattr(defaults, field),
            action=_GivenSize,
            metavar="N",
            help=f"{text}; --quick: {getattr(quick, field)}.",
        )
    demo.add_argument("--seed", type=int, default=defaults.seed, help="Random seed (data, models, training).")
    demo.add_argument(
        "--random-models",
        action="store_true",
        help="Use small random models even if the MiniLM weights package is installed.",
    )
    demo.add_argument(
        "--output-dir",
        help="Keep the data, both models and their evaluation reports here (default: a temporary folder, removed).",
    )
    demo.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    diagnose = commands.add_parser(
        "diagnose-gradients",
        formatter_class=DefaultsHelpFormatter,
        help="Variance of the retriever gradient under each objective, on a fixed batch of the demo data.",
    )
    diagnose.add_argument(
        "--objective",
        action="append",
        dest="objectives",
        metavar="NAME[:KEY=VALUE,...]",
        help="Objective to measure, with options, e.g. `jsa:mis_steps=4` (repeatable). Default: "
        + ", ".join(DEFAULT_DIAGNOSED)
        + ".",
    )
    diagnose.add_argument("--repeats", type=int, default=16, help="Gradient estimates per objective.")
    diagnose.add_argument(
        "--part",
        choices=("query_encoder", "posterior_encoder"),
        default="query_encoder",
        help="Whose gradient to measure: the prior retriever's query encoder, or the posterior encoder (jsa, vrag).",
    )
    diagnose.add_argument("--batch-size", type=int, default=8, help="Examples in the fixed batch.")
    diagnose.add_argument(
        "--people", type=int, default=60, help="People in the demo knowledge base (6 facts each)."
    )
    diagnose.add_argument("--seed", type=int, default=0, help="Random seed (data, models, sampling).")
    diagnose.add_argument(
        "--random-models", action="store_true", help="Small random models instead of MiniLM."
    )
    add_recipe_commands(commands)
    return parser


def parse_objective_spec(spec: str) -> tuple[str, dict]:
    """`"vrag:estimator=sampled,beta=0.5"` -> `("vrag", {"estimator": "sampled", "beta": 0.5})`."""
    import yaml

    name, _, options = spec.partition(":")
    kwargs = {}
    for option in filter(None, options.split(",")):
        key, equals, value = option.partition("=")
        if not equals:
            raise ValueError(f"Objective option {option!r} in {spec!r} must look like KEY=VALUE.")
        kwargs[key.strip()] = yaml.safe_load(value)
    return name.strip(), kwargs


def _diagnose(args: argparse.Namespace) -> None:
    from .recipes.demo import demo_folder, prepare_demo

    settings = DemoSettings(
        n_people=args.people,
        seed=args.seed,
        use_pretrained=False if args.random_models else None,
        show_progress=False,
    )
    with demo_folder(settings) as folder:  # the data files stay until the diagnostic is done
        _diagnose_prepared(args, prepare_demo(settings, folder))


def _diagnose_prepared(args: argparse.Namespace, setup: Any) -> None:
    import torch

    from .data.collator import EtragDataCollator
    from .data.memory import build_instance_memory
    from .evaluation.diagnostics import HEADER, retriever_gradient_variance
    from .objectives import objective_class
    from .retrieval.index import PassageIndex

    prepared = setup.prepared
    rows = [prepared.train[i] for i in range(min(args.batch_size, len(prepared.train)))]
    collator = EtragDataCollator(prepared.model.retriever_pad_id, prepared.model.generator_pad_id)
    batch = collator([{k: r[k] for k in ("input_ids", "labels", "gold_passage_index")} for r in rows])
    print(
        f"Demo data, {setup.description}; batch of {len(rows)}; dropout off; {args.repeats} repeats each; "
        f"gradient of the {args.part}."
    )
    print(HEADER)
    for spec in args.objectives or DEFAULT_DIAGNOSED:
        name, kwargs = parse_objective_spec(spec)
        index, objective_batch = None, batch
        if objective_class(name).reads_instance_memory:
            # ETRAG retrieves training instances: the memory is the training set, each with its answer, and
            # every example must not retrieve itself (the batch is the training set's first rows).
            index = PassageIndex(
                build_instance_memory(prepared.train_examples, prepared.tokenizers.retriever)
            )
            objective_batch = dict(batch, memory_index=torch.arange(len(rows)))
        result = retriever_gradient_variance(
            prepared.model,
            objective_batch,
            name,
            args.repeats,
            kwargs,
            seed=args.seed,
            index=index,
            part=args.part,
        )
        result.objective = spec
        print(result.row(), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "train":
        args.overrides = unknown  # the recipe's own flags, parsed by the recipe parser
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command in ("train", "evaluate"):
        return run_recipe_command(args)
    if args.command == "demo":
        from .recipes.demo import run_demo

        given = {name: getattr(args, name) for name in getattr(args, "given", ())}
        settings = (DemoSettings.quick if args.quick else DemoSettings)(
            **given,
            seed=args.seed,
            use_pretrained=False if args.random_models else None,
            show_progress=not args.no_progress,
            output_dir=args.output_dir,
        )

        def demo() -> int:
            run_demo(settings)
            return 0

        return report_failures("demo", demo)
    if args.command == "diagnose-gradients":
        return report_failures("diagnose-gradients", lambda: _diagnose(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
