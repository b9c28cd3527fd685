"""The `hf-etrag` command line: `hf-etrag demo` (more commands arrive with the recipes)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main", "make_parser"]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-etrag", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="Train on a synthetic knowledge base, frozen retriever vs end to end, and print recall@k and EM.",
    )
    demo.add_argument("--people", type=int, default=None, help="People in the knowledge base (6 facts each).")
    demo.add_argument("--steps", type=int, default=None, help="Training steps per run.")
    demo.add_argument("--warmup-steps", type=int, default=None, help="Generator reading warm-up steps.")
    demo.add_argument("--seed", type=int, default=None)
    demo.add_argument(
        "--random-models",
        action="store_true",
        help="Use small random models even if the MiniLM weights package is installed.",
    )
    demo.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import DemoSettings, run_demo

        settings = DemoSettings()
        if args.people is not None:
            settings.n_people = args.people
        if args.steps is not None:
            settings.max_steps = args.steps
        if args.warmup_steps is not None:
            settings.reader_warmup_steps = args.warmup_steps
        if args.seed is not None:
            settings.seed = args.seed
        settings.use_pretrained = False if args.random_models else None
        settings.show_progress = not args.no_progress
        try:
            run_demo(settings)
        except ValueError as error:
            print(f"hf-etrag demo: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
