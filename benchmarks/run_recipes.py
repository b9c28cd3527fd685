"""Run the shipped recipes on the real data, once per seed, and record each run for docs/results.md.

Each run is `hf-etrag train RECIPE --seed N --output_dir runs/NAME/seedN [overrides]`; its wall time and the load
of the machine are measured here and its test metrics read from `runs/NAME/seedN/evaluation-*/metrics.json`.
The record (metrics, command, steps, wall time, load) is written to `docs/results/NAME/seedN.json` (small,
committed; never checkpoints) and appended to `runs/results.jsonl`; `benchmarks/results_tables.py` turns the
committed records into the tables of docs/results.md.

    python benchmarks/run_recipes.py                                  # every run below, seed 42
    python benchmarks/run_recipes.py semeval_k0 semeval_k5 --seeds 42 43 44
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

# name -> (recipe, extra command-line overrides)
RUNS: dict[str, tuple[str, list[str]]] = {
    "semeval_k0": ("recipes/semeval_no_retrieval.yaml", []),
    "semeval_k1": ("recipes/semeval_etrag.yaml", ["--n_docs", "1"]),
    "semeval_k5": ("recipes/semeval_etrag.yaml", []),
    "semeval_k10": ("recipes/semeval_etrag.yaml", ["--n_docs", "10"]),
    "squad_open_frozen_retriever": ("recipes/squad_open_frozen_retriever.yaml", []),
    "squad_open_rag_sequence": ("recipes/squad_open_rag_sequence.yaml", []),
    "squad_open_rag_token": ("recipes/squad_open_rag_token.yaml", []),
    "squad_open_jsa": ("recipes/squad_open_jsa.yaml", []),
    "squad_open_vrag": ("recipes/squad_open_vrag.yaml", []),
    "wow_frozen_retriever": ("recipes/wow_frozen_retriever.yaml", []),
    "wow_jsa": ("recipes/wow_jsa.yaml", []),
}
RESULTS_ROOT = Path(__file__).resolve().parent.parent / "docs" / "results"

# The figures each task is judged by, in table order.
HEADLINE = {
    "relation_extraction": ("micro_f1", "micro_precision", "micro_recall"),
    "open_qa": ("recall@1", "recall@5", "mrr", "exact_match", "f1"),
    "dialogue": ("recall@1", "recall@5", "unigram_f1", "rouge_l"),
}


def _flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = value
    return flat


def _headline(metrics: dict) -> str:
    flat = _flatten(metrics)
    names = HEADLINE.get(metrics.get("task"), tuple(flat)[:6])
    return ", ".join(f"{name} {flat[name]:.3f}" for name in names if name in flat)


def refresh_share(state: dict) -> dict[str, float]:
    """Index refreshes logged by the refresh callback during training, and their share of `train_runtime`."""
    history = state.get("log_history", [])
    seconds = sum(entry.get("refresh_seconds", 0.0) for entry in history)
    runtime = next((entry["train_runtime"] for entry in history if "train_runtime" in entry), None)
    return {
        "refreshes": sum("refresh_seconds" in entry for entry in history),
        "refresh_seconds": round(seconds, 1),
        "train_runtime": runtime,
        "refresh_share": seconds / runtime if runtime else 0.0,
    }


def run(
    name: str, output_root: Path, seed: int, extra: list[str], results_root: Path | None = RESULTS_ROOT
) -> dict:
    recipe, overrides = RUNS[name]
    overrides = [*overrides, *extra]
    output_dir = output_root / name / f"seed{seed}"
    command = [
        "hf-etrag",
        "train",
        recipe,
        "--seed",
        str(seed),
        "--output_dir",
        str(output_dir),
        "--disable_tqdm",
        "true",
        *overrides,
    ]
    print(f"$ {shlex.join(command)}", flush=True)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    log_path = output_root / name / f"seed{seed}.log"
    log_path.write_text(completed.stdout)
    if completed.returncode != 0:
        print(completed.stdout[-3000:], file=sys.stderr)
        raise SystemExit(f"{name} seed {seed} failed with exit code {completed.returncode}; log: {log_path}")
    metric_files = sorted(output_dir.glob("evaluation-*/metrics.json"))
    if not metric_files:
        raise SystemExit(f"{name} wrote no evaluation-*/metrics.json under {output_dir}.")
    metrics = json.loads(metric_files[0].read_text())
    state = json.loads((output_dir / "trainer_state.json").read_text())
    row = {
        "name": name,
        "seed": seed,
        "command": shlex.join(["hf-etrag", "train", recipe, "--seed", str(seed), *overrides]),
        "steps": state.get("global_step"),
        "wall_seconds": round(wall, 1),
        # The cores are shared: the 1-minute load average before and after says whether they were idle.
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "torch_threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "date": time.strftime("%Y-%m-%d"),
        "metrics": metrics,
        "headline": _headline(metrics),
        **refresh_share(state),
    }
    with (output_root / "results.jsonl").open("a") as log:
        log.write(json.dumps(row) + "\n")
    if results_root is not None:
        record = results_root / name / f"seed{seed}.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(row, indent=2) + "\n")
        os.replace(tmp, record)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help=f"Runs to do (default: all): {', '.join(RUNS)}.")
    parser.add_argument("--output-root", type=Path, default=Path("runs"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="One run per seed (default: 42).")
    parser.add_argument(
        "--no-record", action="store_true", help="Do not write docs/results/NAME/seedN.json (trial runs)."
    )
    parser.add_argument(
        "--extra", default="", help="Extra recipe flags for every run, one string, e.g. '--max_steps 10'."
    )
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in RUNS]
    if unknown:
        parser.error(f"unknown run(s) {unknown}; choose from {list(RUNS)}")
    args.output_root.mkdir(parents=True, exist_ok=True)
    print("| run | command | steps | wall | test metrics |\n|---|---|---|---|---|", flush=True)
    for name in args.names or list(RUNS):
        for seed in args.seeds:
            (args.output_root / name).mkdir(parents=True, exist_ok=True)
            results_root = None if args.no_record else RESULTS_ROOT
            row = run(name, args.output_root, seed, shlex.split(args.extra), results_root)
            minutes, seconds = divmod(round(row["wall_seconds"]), 60)
            print(
                f"| {name} | `{row['command']}` | {row['steps']} | {minutes} min {seconds} s | "
                f"{row['headline']} |",
                flush=True,
            )
            if row["refreshes"]:
                print(
                    f"  {name}: {row['refreshes']} index refreshes during training, {row['refresh_seconds']} s, "
                    f"{100 * row['refresh_share']:.1f}% of {row['train_runtime']:.0f} s training wall time",
                    flush=True,
                )


if __name__ == "__main__":
    main()
