"""Share of training wall time spent keeping the passage index fresh, in a SQuAD recipe, per strategy.

Three ways to train the retriever against an index (Atlas, Izacard et al. 2023, section 4.3), each run for the
same steps from the same recipe in one process, one after the other:

- `full`: the document encoder trains and the whole corpus is re-encoded every `--refresh-steps` steps.
- `rerank`: the document encoder trains, the index is never refreshed; each step searches the stale index for
  the top-L and re-ranks them with the current document encoder (`rerank_top_l`).
- `query_side`: the document encoder stays frozen, so the index never goes stale.

For each: training wall time (the Trainer's `train_runtime`), the seconds spent in index refreshes (logged by
`IndexRefreshCallback`) and their share, and seconds per step outside refreshes (re-ranking and document-
encoder gradients show up there). The refresh share of the recipe's own strategy and schedule is printed last
(derived from the measured per-refresh and per-step times when the recipe refreshes).

    python benchmarks/refresh_overhead.py                                    # squad_open_rag_sequence.yaml
    python benchmarks/refresh_overhead.py --steps 20 --refresh-steps 10 --rerank-top-l 20
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("full", "rerank", "query_side")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "squad_open_rag_sequence.yaml")
    parser.add_argument("--steps", type=int, default=12, help="training steps per strategy")
    parser.add_argument("--refresh-steps", type=int, default=6, help="full strategy: refresh every N steps")
    parser.add_argument("--rerank-top-l", type=int, default=20, help="rerank strategy: L")
    parser.add_argument(
        "--strategies", default=",".join(STRATEGIES), help=f"subset of {','.join(STRATEGIES)}"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return parser


def _overrides(strategy: str, args: argparse.Namespace, output_dir: str) -> list[str]:
    common = [
        f"--output_dir={output_dir}",
        f"--max_steps={args.steps}",
        "--warmup_steps=0",
        "--logging_steps=1",
        "--do_predict=false",
        "--disable_tqdm=true",
    ]
    if strategy == "full":
        return [*common, "--train_doc_encoder=true", f"--refresh_steps={args.refresh_steps}"]
    if strategy == "rerank":
        return [
            *common,
            "--train_doc_encoder=true",
            "--refresh_steps=0",
            f"--rerank_top_l={args.rerank_top_l}",
        ]
    return [*common, "--train_doc_encoder=false", "--refresh_steps=0"]


def run_strategy(strategy: str, args: argparse.Namespace, initial_embeddings=None) -> dict:
    from transformers import set_seed

    from hf_etrag.recipes.arguments import parse_recipe
    from hf_etrag.recipes.data import build_index, load_examples, training_dataset
    from hf_etrag.recipes.models import build_model
    from hf_etrag.training.callbacks import refresh_index
    from hf_etrag.training.trainer import EtragTrainer

    with tempfile.TemporaryDirectory() as output_dir:
        recipe = parse_recipe(args.recipe, _overrides(strategy, args, output_dir))
        set_seed(recipe.training.seed)
        model, tokenizers = build_model(recipe.model)
        data = recipe.data
        train_examples = load_examples(data, data.train_source, data.train_split, data.train_limit)
        index = build_index(data, recipe.model, tokenizers, train_examples)
        model.set_index(index)
        start = time.perf_counter()
        if initial_embeddings is None:
            refresh_index(model, batch_size=recipe.training.refresh_batch_size, step=0)
        else:  # every strategy starts from the same encoder, hence the same embeddings: encode them once
            index.set_embeddings(initial_embeddings, step=0)
        initial_build = time.perf_counter() - start
        embeddings = index.embeddings.copy()
        train = training_dataset(train_examples, tokenizers, recipe.model, index)
        trainer = EtragTrainer(model, recipe.training, train_dataset=train, processing_class=tokenizers)
        result = trainer.train()
        history = trainer.state.log_history
    runtime = result.metrics["train_runtime"]
    refresh_seconds = sum(entry.get("refresh_seconds", 0.0) for entry in history)
    refreshes = sum("refresh_seconds" in entry for entry in history)
    return {
        "strategy": strategy,
        "steps": trainer.state.global_step,
        "runtime": runtime,
        "refresh_seconds": refresh_seconds,
        "refreshes": refreshes,
        "share": refresh_seconds / runtime,
        "step_seconds": (runtime - refresh_seconds) / max(1, trainer.state.global_step),
        "initial_build": initial_build,
        "initial_embeddings": embeddings,
    }


def _per_refresh(full: dict) -> float:
    return full["refresh_seconds"] / full["refreshes"]


def _derived_share(full: dict, every: int) -> float:
    """Refresh share of wall time with a full refresh every `every` steps, from the `full` run's measured
    seconds per refresh and per step (derived, not run)."""
    per_refresh = _per_refresh(full)
    return per_refresh / (every * full["step_seconds"] + per_refresh)


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise SystemExit(f"--strategies: unknown {sorted(unknown)}; choose from {STRATEGIES}")
    os.chdir(ROOT)  # recipes name their data relative to the project root
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"recipe {args.recipe.name}, {args.steps} steps per strategy, {torch.get_num_threads()} torch threads"
    )
    rows = []
    for strategy in strategies:
        rows.append(run_strategy(strategy, args, rows[0]["initial_embeddings"] if rows else None))
    print(
        "| strategy | steps | train wall (s) | refreshes | refresh (s) | refresh share | s/step outside refresh |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['strategy']} | {row['steps']} | {row['runtime']:.1f} | {row['refreshes']} | "
            f"{row['refresh_seconds']:.1f} | {100 * row['share']:.1f}% | {row['step_seconds']:.2f} |"
        )
    print(f"initial index build (not counted above): {rows[0]['initial_build']:.1f} s")
    by_name = {row["strategy"]: row for row in rows}
    full = by_name.get("full")
    measured_full = full is not None and full["refreshes"] > 0
    if measured_full:
        print(
            f"full: {_per_refresh(full):.1f} s per refresh, {full['step_seconds']:.2f} s per step between refreshes"
        )
        for every in (50, 100, 500):
            share = _derived_share(full, every)
            print(f"  derived: a full refresh every {every} steps would take {100 * share:.1f}% of wall time")
    from hf_etrag.recipes.arguments import parse_recipe

    recipe = parse_recipe(args.recipe, [])
    default = "full" if recipe.model.train_doc_encoder else "query_side"
    if default == "full" and measured_full:
        # `run_recipes.py` measures the recipe's own schedule in a full run; here it is derived.
        every = recipe.training.refresh_steps
        share = _derived_share(full, every) if every else 0.0
        print(
            f"refresh share of wall time, recipe default (full refresh every {every} steps, derived): {100 * share:.1f}%"
        )
    elif default in by_name:
        print(
            f"refresh share of wall time, recipe default ({default}): {100 * by_name[default]['share']:.1f}%"
        )


if __name__ == "__main__":
    main()
