"""The evaluation report: a Markdown page with matplotlib figures, written next to `metrics.json`.

Figures (PNG, drawn on matplotlib's Agg canvas without pyplot, so no display or global backend state is used):

- `recall_at_k.png`: recall@k of the gold passage against k (open QA, dialogue);
- `per_relation_f1.png`: F1 per relation label (relation extraction);
- `retrieved_instances.png`: per retrieval rank, the share of retrieved training instances that have the query's
  label or share one of its entities (relation extraction with ETRAG, the analysis of Makino et al. 2024);
- `training_curves.png`: the loss and retrieval statistics (`gold_in_top_k`, `retriever_top1_prob`, ...) from
  the `log_history` of `trainer_state.json` (and the reader warm-up's, when there was one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["ReportInputs", "training_figure", "training_series", "write_report"]

# Per-step statistics in [0, 1] drawn in the retrieval panel of the training curves.
_RATE_KEYS = (
    "gold_in_top_k",
    "retriever_top1_prob",
    "jsa_acceptance_rate",
    "eval_gold_in_top_k",
    "selection_max_weight",
)
# Per-step statistics in nats, drawn (dashed) against a second axis of the retrieval panel.
_NATS_KEYS = ("retriever_entropy", "prompt_shuffle_gain")


@dataclass
class ReportInputs:
    """Everything the report shows; empty fields leave their section or figure out."""

    title: str
    settings: dict[str, Any]
    metrics: dict[str, Any]
    recall_at_k: dict[int, float] = field(default_factory=dict)
    per_relation: dict[str, dict[str, float]] = field(default_factory=dict)
    share_by_rank: dict[str, list[float]] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    trainer_states: dict[str, Path] = field(
        default_factory=dict
    )  # {"training": path, "reader warm-up": path}


def _new_figure(width: float = 6.0, height: float = 3.6) -> Figure:
    figure = Figure(figsize=(width, height), dpi=90, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _plot_recall(path: Path, curve: dict[int, float]) -> None:
    figure = _new_figure()
    axes = figure.add_subplot()
    ks = sorted(curve)
    axes.plot(ks, [curve[k] for k in ks], marker="o")
    axes.set_xscale("log")
    axes.set_xticks(ks, [str(k) for k in ks])
    axes.set(
        xlabel="k (passages retrieved)", ylabel="recall@k", ylim=(0, 1.02), title="Gold passage in the top k"
    )
    axes.grid(alpha=0.3)
    figure.savefig(path)


def _plot_per_relation(path: Path, per_relation: dict[str, dict[str, float]]) -> None:
    labels = sorted(per_relation)
    figure = _new_figure(7.0, max(2.5, 0.28 * len(labels) + 1))
    axes = figure.add_subplot()
    axes.barh(range(len(labels)), [per_relation[label]["f1"] for label in labels])
    axes.set_yticks(
        range(len(labels)), [f"{label} (n={int(per_relation[label]['support'])})" for label in labels]
    )
    axes.invert_yaxis()
    axes.tick_params(axis="y", labelsize=7)
    axes.set(xlabel="F1", xlim=(0, 1), title="F1 per relation")
    figure.savefig(path)


def _plot_share_by_rank(path: Path, shares: dict[str, list[float]]) -> None:
    figure = _new_figure()
    axes = figure.add_subplot()
    width = 0.8 / len(shares)
    for offset, (name, values) in enumerate(shares.items()):
        ranks = [r + 1 + (offset - (len(shares) - 1) / 2) * width for r in range(len(values))]
        axes.bar(ranks, values, width=width, label=name)
    n_ranks = max(len(v) for v in shares.values())
    axes.set_xticks(range(1, n_ranks + 1))
    axes.set(
        xlabel="retrieval rank",
        ylabel="share of queries",
        ylim=(0, 1.18),
        title="Retrieved training instances",
    )
    axes.legend(loc="upper center", ncols=len(shares), fontsize=8)
    figure.savefig(path)


def training_series(state_path: Path) -> dict[str, list[tuple[int, float]]]:
    """`{statistic: [(step, value), ...]}` from a `trainer_state.json` log history (numbers only)."""
    history = json.loads(Path(state_path).read_text(encoding="utf-8")).get("log_history", [])
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in history:
        step = entry.get("step")
        for name, value in entry.items():
            if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(name, []).append((step, float(value)))
    return series


def _plot_training(path: Path, states: dict[str, Path]) -> bool:
    figure = training_figure(states)
    if figure is None:
        return False
    figure.savefig(path)
    return True


def training_figure(states: dict[str, Path]) -> Figure | None:
    """Loss (left) and retrieval rates (right, with entropy-like statistics in nats on a second axis) of the
    `trainer_state.json` files `states`; the warm-up's steps are drawn before step 0. `None`: no loss logged."""
    runs = {name: training_series(p) for name, p in states.items() if Path(p).is_file()}
    runs = {name: series for name, series in runs.items() if "loss" in series}
    if not runs:
        return None
    figure = _new_figure(10.0, 3.6)
    loss_axes, rate_axes = figure.subplots(1, 2)
    warmup_steps = max((s for s, _ in runs.get("reader warm-up", {}).get("loss", [])), default=0)
    rates_drawn = False
    for name, series in runs.items():
        shift = -warmup_steps if name == "reader warm-up" else 0
        for key in ("loss", "eval_loss"):
            if key in series:
                steps, values = zip(*series[key], strict=True)
                label = key if name == "training" else f"{name} {key}"
                loss_axes.plot(
                    [s + shift for s in steps],
                    values,
                    marker="." if key == "eval_loss" else None,
                    label=label,
                )
        if name == "training":
            for key in _RATE_KEYS:
                if key in series:
                    steps, values = zip(*series[key], strict=True)
                    rate_axes.plot(steps, values, label=key)
                    rates_drawn = True
            nats = [key for key in _NATS_KEYS if key in series]
            if nats:
                nats_axes = rate_axes.twinx()
                for key in nats:
                    steps, values = zip(*series[key], strict=True)
                    nats_axes.plot(steps, values, linestyle="--", label=key)
                nats_axes.set(ylabel="nats")
                nats_axes.legend(fontsize=8, loc="lower right")
                rates_drawn = True
    loss_axes.set(xlabel="optimiser step", ylabel="loss", title="Loss")
    loss_axes.legend(fontsize=8)
    for axes in (loss_axes, rate_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    if rates_drawn:
        rate_axes.set(xlabel="optimiser step", ylim=(0, 1.02), title="Retrieval during training")
        rate_axes.legend(fontsize=8, loc="upper left")
    else:
        rate_axes.set_axis_off()
        rate_axes.text(0.5, 0.5, "no retrieval statistics logged", ha="center", va="center")
    return figure


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "n/a" if value is None else str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _examples_table(examples: list[dict[str, Any]]) -> list[str]:
    lines = []
    for number, example in enumerate(examples, start=1):
        gold = example.get("label") or " / ".join(example.get("answers", []))
        lines += [
            f"**{number}. {_cell(example['question'])}**",
            "",
            f"- gold: `{_cell(gold)}`; prediction: `{_cell(example.get('prediction'))}`"
            + (
                f"; gold passage rank: {example['gold_rank']}" if example.get("gold_rank") is not None else ""
            ),
            "",
        ]
        if example.get("retrieved"):
            lines += ["| rank | retrieved | match |", "|---|---|---|"]
            for rank, item in enumerate(example["retrieved"], start=1):
                marks = [
                    name
                    for name, key in (
                        ("gold", "gold"),
                        ("same label", "same_label"),
                        ("shares entity", "shares_entity"),
                    )
                    if item.get(key)
                ]
                text = f"[{item['label']}] {item['text']}" if "label" in item else item["text"]
                title = f"*{item['title']}*: " if item.get("title") else ""
                lines.append(f"| {rank} | {_cell(title + text)} | {', '.join(marks)} |")
            lines.append("")
    return lines


def write_report(folder: str | Path, inputs: ReportInputs) -> list[str]:
    """Write `report.md` and its figures into `folder`; returns the names of the files written."""
    folder = Path(folder)
    written: list[str] = []
    figures: list[tuple[str, str]] = []
    if inputs.recall_at_k:
        _plot_recall(folder / "recall_at_k.png", inputs.recall_at_k)
        figures.append(("recall_at_k.png", "Recall@k of the gold passage"))
    if inputs.per_relation:
        _plot_per_relation(folder / "per_relation_f1.png", inputs.per_relation)
        figures.append(("per_relation_f1.png", "F1 per relation"))
    if inputs.share_by_rank:
        _plot_share_by_rank(folder / "retrieved_instances.png", inputs.share_by_rank)
        figures.append(
            ("retrieved_instances.png", "Retrieved instances sharing the query's label or an entity")
        )
    if _plot_training(folder / "training_curves.png", inputs.trainer_states):
        figures.append(("training_curves.png", "Training curves"))
    lines = [f"# {inputs.title}", "", "| setting | value |", "|---|---|"]
    lines += [f"| {name} | {_cell(_format(value))} |" for name, value in inputs.settings.items()]
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {_format(value)} |" for name, value in inputs.metrics.items()]
    if inputs.per_relation:
        lines += [
            "",
            "## Per relation",
            "",
            "| relation | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        for label, row in sorted(inputs.per_relation.items()):
            lines.append(
                f"| {label} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {int(row['support'])} |"
            )
    if figures:
        lines += ["", "## Figures", ""]
        for name, caption in figures:
            lines += [f"![{caption}]({name})", ""]
            written.append(name)
    if inputs.examples:
        lines += ["", "## Examples", ""] + _examples_table(inputs.examples)
    (folder / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["report.md", *written]
