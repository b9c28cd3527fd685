"""How far can training move all-MiniLM-L6-v2 on open SQuAD's unseen test articles, given perfect supervision?

The end-to-end recipes teach the retriever from a reader's likelihoods, a noisy stand-in for knowing which
passage holds the answer. This script gives the retriever that knowledge outright (the gold passage of each
training question, cross-entropy at the recipes' temperature) and reports test recall@k against the frozen
encoder, for the two ways the recipes can train:

- `query_side`: only the query encoder learns; passages keep their frozen MiniLM embeddings, and the loss is a
  softmax over the whole corpus (`train_doc_encoder: false`).
- `both_sides`: one shared encoder for queries and passages learns, with the other questions' gold passages of
  the batch as negatives; the corpus is re-encoded before the test (`train_doc_encoder: true`).

If the supervised run cannot beat the frozen encoder, no reader signal can; the gap between the two strategies is
why the SQuAD recipes train both sides. The frozen and trained recall@5 are printed last.

    python benchmarks/squad_retriever_ceiling.py                       # both strategies, 150 steps of 16
    python benchmarks/squad_retriever_ceiling.py --strategies both_sides --steps 50
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hf_etrag.retrieval.encoding import normalize_if_cosine, pool

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("query_side", "both_sides")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "squad_open")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--max-query-length", type=int, default=64)
    parser.add_argument("--max-passage-length", type=int, default=160)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _records(path: Path) -> list[dict]:
    with path.open() as handle:
        return [json.loads(line) for line in handle]


class _Encoder:
    """Mean-pooled, L2-normalised MiniLM vectors, pooled by the retriever's own `pool`."""

    def __init__(self, args: argparse.Namespace) -> None:
        from transformers import AutoModel, AutoTokenizer

        from hf_etrag.recipes.models import minilm_path

        self.tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        self.model = AutoModel.from_pretrained(minilm_path())
        self.args = args

    def __call__(self, texts: list, max_length: int, batch_size: int = 64) -> torch.Tensor:
        """`texts`: strings (questions) or (title, text) pairs (passages, encoded as the index encodes them)."""
        vectors = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            inputs = (
                [list(column) for column in zip(*chunk, strict=True)]
                if isinstance(chunk[0], tuple)
                else [chunk]
            )
            batch = self.tokenizer(
                *inputs,
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            states = self.model(**batch).last_hidden_state
            vectors.append(normalize_if_cosine(pool(states, batch["attention_mask"], "mean"), "cosine"))
        return torch.cat(vectors)


def _recall(
    encoder: _Encoder, questions: list[dict], passages: list[tuple[str, str]], row_of: dict[str, int]
) -> dict:
    args = encoder.args
    with torch.no_grad():
        docs = encoder(passages, args.max_passage_length)
        queries = encoder([q["question"] for q in questions], args.max_query_length)
    scores = queries @ docs.T
    gold = torch.tensor([row_of[q["gold_passage_id"]] for q in questions])
    rank = (scores > scores.gather(1, gold[:, None])).sum(1)
    return {k: (rank < k).float().mean().item() for k in (1, 5, 20)}


def train(strategy: str, args: argparse.Namespace, data: dict) -> dict:
    torch.manual_seed(args.seed)
    encoder = _Encoder(args)
    passages, row_of, train_questions = data["passages"], data["row_of"], data["train"]
    frozen_docs = None
    if strategy == "query_side":
        with torch.no_grad():
            frozen_docs = encoder(passages, args.max_passage_length)
    optimizer = torch.optim.AdamW(encoder.model.parameters(), lr=args.learning_rate)
    order = torch.randperm(len(train_questions)).tolist()
    start = time.perf_counter()
    for step in range(args.steps):
        begin = (step * args.batch_size) % len(order)
        batch = [train_questions[i] for i in order[begin : begin + args.batch_size]]
        queries = encoder([q["question"] for q in batch], args.max_query_length)
        gold_rows = [row_of[q["gold_passage_id"]] for q in batch]
        if frozen_docs is not None:  # softmax over the whole (frozen) corpus
            logits, labels = queries @ frozen_docs.T, torch.tensor(gold_rows)
        else:  # the batch's gold passages, re-encoded with gradient, are each other's negatives
            distinct = sorted(set(gold_rows))
            column = {row: j for j, row in enumerate(distinct)}
            docs = encoder([passages[row] for row in distinct], args.max_passage_length)
            logits, labels = queries @ docs.T, torch.tensor([column[row] for row in gold_rows])
        loss = F.cross_entropy(logits / args.temperature, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    return {"strategy": strategy, "seconds": seconds, **_recall(encoder, data["test"], passages, row_of)}


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise SystemExit(f"--strategies: unknown {sorted(unknown)}; choose from {STRATEGIES}")
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = _records(args.data / "corpus.jsonl")
    data = {
        "passages": [(record.get("title") or "", record["text"]) for record in corpus],
        "row_of": {record["id"]: row for row, record in enumerate(corpus)},
        "train": _records(args.data / "train.jsonl"),
        "test": _records(args.data / "test.jsonl"),
    }
    print(
        f"{len(corpus)} passages, {len(data['train'])} training / {len(data['test'])} test questions; "
        f"{args.steps} steps of {args.batch_size}, lr {args.learning_rate}, T {args.temperature}, "
        f"{torch.get_num_threads()} torch threads"
    )
    frozen = _recall(_Encoder(args), data["test"], data["passages"], data["row_of"])
    rows = [train(strategy, args, data) for strategy in strategies]
    print("| retriever | train s | test recall@1 | recall@5 | recall@20 |\n|---|---|---|---|---|")
    print(f"| frozen | 0 | {frozen[1]:.4f} | {frozen[5]:.4f} | {frozen[20]:.4f} |")
    for row in rows:
        print(
            f"| {row['strategy']} (gold supervision) | {row['seconds']:.0f} | {row[1]:.4f} | {row[5]:.4f} | "
            f"{row[20]:.4f} |"
        )
    summary = ", ".join(f"{row['strategy']} {row[5]:.4f}" for row in rows)
    print(f"test recall@5: frozen {frozen[5]:.4f}, {summary}")


if __name__ == "__main__":
    main()
