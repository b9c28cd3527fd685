"""Training-step throughput of `EtragTrainer` (rag_token) against transformers' `RagTokenForGeneration`.

Both sides train the same thing with the same `Trainer` machinery: a BERT-shaped question encoder (ours a
`BertModel`, theirs a `DPRQuestionEncoder`, which is a BERT; same config, same initial weights) and the
same BART generator (same config, same initial weights), against a frozen document index built once from
the same embeddings (transformers' RAG trains the question encoder and the generator only, so ours runs
with `train_doc_encoder=False` and no refresh). Same corpus, k (`n_docs`), batch size, maximum question /
passage / context / target lengths, optimiser (AdamW, constant learning rate) and examples.

- theirs: `RagRetriever` with `index_name="custom"` over a `datasets` corpus whose FAISS index is saved
  to a temporary folder (`passages_path` / `index_path`, the documented way), trained by
  `transformers.Trainer`. Each step the retriever gathers the passages from the dataset, decodes the
  question to a string, joins it with title and text and re-tokenises all `batch * k` strings
  (`RagRetriever.postprocess_docs`, padded to `max_combined_length`).
- ours: `EtragModel` + `EtragTrainer`; passages are token ids stored once (`PassageIndex`), so building
  the generator inputs is array slicing.

Timed blocks alternate between the two (which one goes first alternates too); each block is one
`trainer.train()` of `warmup + steps` steps, timed from the end of the last warm-up step to the end of the
last step (so optimiser creation and the first step's allocations are excluded). The median examples/s
of each side and their ratio, printed last, summarise the run. Before it, the retrieval path alone (query
vectors to generator inputs) is timed per batch on both sides, interleaved: the model compute is the same
on both sides, so the ratio is about 1 + (the difference in this path and in the loss) / (one step).

The default runs two presets (see `PRESETS`): `shapes`, equal shapes on both sides (contexts cut to 128 tokens,
a vocabulary of 8,000), then `realistic`, transformers' RAG as its users run it (`max_combined_length` 300, its
default, to which `RagRetriever` pads every context; BART's 50,265-token vocabulary; DPR-style 100-word
passages cut from the SQuAD articles), our side with its defaults. The last line is the realistic ratio.

    python benchmarks/train_step_vs_hf_rag.py                        # shapes, then realistic; CPU
    python benchmarks/train_step_vs_hf_rag.py --threads 1            # on cores shared with other processes
    python benchmarks/train_step_vs_hf_rag.py --preset realistic     # one preset
    python benchmarks/train_step_vs_hf_rag.py --preset base --device cuda   # BERT-base + BART-base, bf16
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import torch
from datasets import Dataset, load_dataset
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    DataCollatorForSeq2Seq,
    DPRConfig,
    DPRQuestionEncoder,
    PrinterCallback,
    RagConfig,
    RagRetriever,
    RagTokenForGeneration,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from hf_etrag import EtragConfig, EtragModel, EtragTrainer, EtragTrainingArguments, PassageIndex
from hf_etrag.data import make_synthetic_knowledge_base, tokenize_qa_dataset
from hf_etrag.retrieval import tokenize_corpus
from hf_etrag.tiny_models import train_wordpiece_tokenizer
from hf_etrag.training.callbacks import refresh_index

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "squad_open"

# Encoder: BERT shape; generator: BART shape. "base" is BERT-base and BART-base (vocabulary aside: the
# tokenizer is trained on the corpus, so its size is what the corpus gives, up to `vocab`).
# `passage_words`: cut the articles into disjoint blocks of that many words, as DPR's Wikipedia passages are
# (0: the corpus's own passages, whole SQuAD paragraphs). `gen_vocab`: the generator's vocabulary size (0: the
# tokenizer's); the tokenizer trained here has fewer tokens, so the rows past it are never read, but the LM head and
# both sides' softmax run over all of them, as over BART's 50,265.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(  # the smoke test's; a toy whose step is mostly fixed per-step overhead
        vocab=400, hidden=32, layers=1, heads=2, gen_d=32, gen_layers=1, gen_heads=2, gen_vocab=0,
        passage_words=0, batch=4, max_query=16, max_context=48, max_target=8, warmup=1, steps=1,
    ),
    # The first comparison: equal shapes on both sides (every context cut to 128 tokens, so both pad to 128).
    "shapes": dict(
        vocab=8000, hidden=128, layers=4, heads=4, gen_d=128, gen_layers=2, gen_heads=4, gen_vocab=0,
        passage_words=0, batch=8, max_query=32, max_context=128, max_target=16, warmup=1, steps=6,
    ),
    # transformers' RAG as its docs and fine-tuning example run it: `max_combined_length` 300 (its default; the
    # retriever pads every context to it), a BART-size vocabulary, DPR-style 100-word passages. CPU-sized layers.
    "realistic": dict(
        vocab=30522, hidden=128, layers=4, heads=4, gen_d=128, gen_layers=2, gen_heads=4, gen_vocab=50265,
        passage_words=100, batch=8, max_query=32, max_context=300, max_target=16, warmup=1, steps=4,
    ),
    "base": dict(
        vocab=30522, hidden=768, layers=12, heads=12, gen_d=768, gen_layers=6, gen_heads=12, gen_vocab=50265,
        passage_words=100, batch=16, max_query=32, max_context=300, max_target=32, warmup=3, steps=20,
    ),
}  # fmt: skip
DEFAULT_PRESETS = ("shapes", "realistic")  # run one after the other; the realistic ratio is printed last


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        action="append",
        help=f"preset to run (repeatable); default: {' then '.join(DEFAULT_PRESETS)}",
    )
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus.jsonl", help="jsonl: id, title, text")
    parser.add_argument(
        "--questions", type=Path, default=SHARED / "train.jsonl", help="jsonl: question, answers"
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N passages")
    parser.add_argument("--n-docs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per side")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per block (default: preset)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per block (default: preset)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: preset")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="cuda trains under bf16 autocast"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's, one per core); 1 avoids OpenMP barrier waits when "
        "other processes share the cores",
    )
    return parser


def word_blocks(corpus: Dataset, words: int) -> Dataset:
    """DPR-style passages: each article (the paragraphs sharing a title, in order) cut into disjoint blocks of
    `words` words."""
    titles, texts = corpus["title"], corpus["text"]
    articles: dict[str, list[str]] = {}
    for title, text in zip(titles, texts, strict=True):
        articles.setdefault(title, []).extend(text.split())
    rows: dict[str, list[str]] = {"id": [], "title": [], "text": []}
    for title, tokens in articles.items():
        for start in range(0, len(tokens), words):
            rows["id"].append(f"{title}_{start // words}")
            rows["title"].append(title)
            rows["text"].append(" ".join(tokens[start : start + words]))
    return Dataset.from_dict(rows)


def load_data(
    corpus_path: Path, questions_path: Path, limit: int | None, passage_words: int = 0
) -> tuple[Dataset, Dataset, str]:
    """Passages (`id`, `title`, `text`) and questions; the synthetic knowledge base when the files are absent
    (a fresh clone without `../shared/data`)."""
    if corpus_path.is_file() and questions_path.is_file():
        corpus = load_dataset("json", data_files=str(corpus_path), split="train")
        questions = load_dataset("json", data_files=str(questions_path), split="train")
        name = corpus_path.parent.name
    else:
        print(f"{corpus_path} or {questions_path} not found: using the synthetic knowledge base")
        kb = make_synthetic_knowledge_base(n_people=200, seed=0)
        corpus, questions, name = kb.corpus, kb.train, "synthetic"
    if "title" not in corpus.column_names:  # transformers' custom index requires a title column
        corpus = corpus.add_column("title", [""] * len(corpus))
    if limit:
        corpus = corpus.select(range(min(limit, len(corpus))))
        kept = set(corpus["id"])
        if "gold_passage_id" in questions.column_names:
            questions = questions.filter(lambda row: row["gold_passage_id"] in kept)
    if passage_words:
        corpus = word_blocks(corpus, passage_words)
        name += f" ({passage_words}-word passages)"
    if "gold_passage_id" in questions.column_names:  # the frozen retriever finds the passages: no gold needed
        questions = questions.remove_columns("gold_passage_id")
    return corpus, questions, name


def model_configs(preset: dict[str, int], tokenizer) -> tuple[BertConfig, DPRConfig, BartConfig]:
    shape = dict(
        vocab_size=len(tokenizer),
        hidden_size=preset["hidden"],
        num_hidden_layers=preset["layers"],
        num_attention_heads=preset["heads"],
        intermediate_size=4 * preset["hidden"],
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    generator = BartConfig(
        vocab_size=preset["gen_vocab"] or len(tokenizer),
        d_model=preset["gen_d"],
        encoder_layers=preset["gen_layers"],
        decoder_layers=preset["gen_layers"],
        encoder_attention_heads=preset["gen_heads"],
        decoder_attention_heads=preset["gen_heads"],
        encoder_ffn_dim=4 * preset["gen_d"],
        decoder_ffn_dim=4 * preset["gen_d"],
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.cls_token_id,
        forced_eos_token_id=None,
    )
    return BertConfig(**shape), DPRConfig(projection_dim=0, **shape), generator


def build_hf_rag(
    ours: EtragModel, dpr_config: DPRConfig, corpus: Dataset, tokenizer, folder: Path, max_context: int
) -> RagTokenForGeneration:
    """transformers' RAG over a custom index holding the same embeddings, initialised with our weights."""
    embeddings = ours.index.embeddings
    passages = Dataset.from_dict({"title": corpus["title"], "text": corpus["text"], "embeddings": embeddings})
    passages.add_faiss_index("embeddings", metric_type=faiss.METRIC_INNER_PRODUCT)
    passages.get_index("embeddings").save(str(folder / "index.faiss"))
    passages.drop_index("embeddings")
    passages.save_to_disk(str(folder / "passages"))
    config = RagConfig.from_question_encoder_generator_configs(
        dpr_config,
        ours.generator.config,
        n_docs=ours.config.n_docs,
        index_name="custom",
        passages_path=str(folder / "passages"),
        index_path=str(folder / "index.faiss"),
        retrieval_vector_size=embeddings.shape[1],
        max_combined_length=max_context,
        reduce_loss=True,  # the Trainer needs a scalar; ours is a mean, theirs a sum: same work
        label_smoothing=0.0,
    )
    retriever = RagRetriever(config, question_encoder_tokenizer=tokenizer, generator_tokenizer=tokenizer)
    question_encoder = DPRQuestionEncoder(dpr_config)
    question_encoder.question_encoder.bert_model.load_state_dict(ours.query_encoder.state_dict())
    generator = BartForConditionalGeneration(ours.generator.config)
    generator.load_state_dict(ours.generator.state_dict())
    return RagTokenForGeneration(
        config=config, question_encoder=question_encoder, generator=generator, retriever=retriever
    )


class StepClock(TrainerCallback):
    """Wall-clock time at the end of every optimiser step (after a device sync)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.times: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self.times = []

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def timed_block(trainer: Trainer, clock: StepClock, warmup: int, batch: int) -> float:
    """Examples per second over the steps after the warm-up of one `trainer.train()`."""
    trainer.train()
    timed = len(clock.times) - warmup
    return timed * batch / (clock.times[-1] - clock.times[warmup - 1])


@torch.no_grad()
def retrieval_path_ms(setup: Setup, batches: int) -> dict[str, float]:
    """Median milliseconds per batch of the retrieval path alone, interleaved: from query vectors to generator
    inputs (ours: FAISS search, stored vectors, token-id slicing; theirs: `RagRetriever.__call__`). Each is
    timed right after its own query encoder's forward pass, as inside the training step."""
    ours, theirs = setup.trainers["ours"][0].model, setup.trainers["theirs"][0].model
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    loaders = {side: iter(setup.trainers[side][0].get_train_dataloader()) for side in times}
    for _ in range(batches):
        batch = {k: v.to(ours.device) for k, v in next(loaders["ours"]).items()}
        query_vectors = ours.encode_queries(batch["input_ids"], batch["attention_mask"])
        start = time.perf_counter()
        doc_indices = ours.retrieve(query_vectors)
        ours.document_vectors(doc_indices, query_vectors.device)
        ours.build_contexts(batch["input_ids"], batch["attention_mask"], doc_indices)
        times["ours"].append(time.perf_counter() - start)

        batch = {k: v.to(theirs.device) for k, v in next(loaders["theirs"]).items()}
        hidden = theirs.question_encoder(batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        start = time.perf_counter()
        out = theirs.retriever(
            batch["input_ids"], hidden.float().cpu().numpy(), n_docs=theirs.config.n_docs, return_tensors="pt"
        )
        out["context_input_ids"].to(hidden.device)
        times["theirs"].append(time.perf_counter() - start)
    return {side: 1000 * statistics.median(values) for side, values in times.items()}


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class Setup:
    """Both trainers, ready to train, and what the report prints about them."""

    trainers: dict[str, tuple[Trainer, StepClock]]
    description: str
    parameters: tuple[int, int]


def build(args: argparse.Namespace, preset: dict[str, int], folder: Path) -> Setup:
    """Data, tokenizer, both models (same initial weights) and both trainers."""
    torch.manual_seed(args.seed)
    corpus, questions, data_name = load_data(args.corpus, args.questions, args.limit, preset["passage_words"])
    tokenizer = train_wordpiece_tokenizer(
        list(corpus["text"]) + list(questions["question"]), vocab_size=preset["vocab"]
    )
    bert, dpr, bart = model_configs(preset, tokenizer)
    ours = EtragModel(
        EtragConfig(
            query_encoder=bert, generator=bart, objective="rag_token", n_docs=args.n_docs,
            pooling="cls", similarity="dot", temperature=1.0, train_doc_encoder=False,
            max_context_length=preset["max_context"],
        )
    )  # fmt: skip
    index = PassageIndex(tokenize_corpus(corpus, tokenizer, max_passage_length=preset["max_context"]))
    ours.set_index(index)
    ours.to(args.device)
    refresh_index(ours, batch_size=64)  # the frozen index both sides search
    qa = tokenize_qa_dataset(
        questions, tokenizer, passage_ids=index.passage_ids,
        max_query_length=preset["max_query"], max_target_length=preset["max_target"],
    )  # fmt: skip
    our_train = qa.select_columns(["input_ids", "labels", "gold_passage_index"])
    # transformers' RAG reads labels as decoder inputs starting with decoder_start_token_id (get_nll shifts).
    start = bart.decoder_start_token_id
    their_train = qa.map(lambda row: {"labels": [start] + row["labels"]}).select_columns(
        ["input_ids", "labels"]
    )
    theirs = build_hf_rag(ours, dpr, corpus, tokenizer, folder, preset["max_context"])
    parameters = trainable_parameters(ours), trainable_parameters(theirs)
    if parameters[0] != parameters[1]:
        raise RuntimeError(
            f"trainable parameters differ: ours {parameters[0]:,}, transformers {parameters[1]:,}"
        )

    common = dict(
        per_device_train_batch_size=preset["batch"], max_steps=preset["warmup"] + preset["steps"],
        learning_rate=1e-4, lr_scheduler_type="constant", logging_strategy="no",
        save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0, seed=args.seed,
        use_cpu=args.device == "cpu", bf16=args.device == "cuda",
    )  # fmt: skip
    our_clock, their_clock = StepClock(args.device), StepClock(args.device)
    our_trainer = EtragTrainer(
        ours,
        EtragTrainingArguments(output_dir=str(folder / "ours"), save_index_with_checkpoints=False, **common),
        train_dataset=our_train,
        callbacks=[our_clock],
    )
    their_trainer = Trainer(
        model=theirs,
        args=TrainingArguments(output_dir=str(folder / "theirs"), remove_unused_columns=False, **common),
        train_dataset=their_train,
        data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=tokenizer.pad_token_id),
        callbacks=[their_clock],
    )
    description = (
        f"{data_name}: {len(corpus)} passages, {len(qa)} questions, tokenizer {len(tokenizer)} tokens, generator "
        f"vocabulary {bart.vocab_size}; preset {preset['name']}: "
        f"encoder {preset['layers']}x{preset['hidden']}, BART {preset['gen_layers']}+{preset['gen_layers']}x"
        f"{preset['gen_d']}; batch {preset['batch']}, k={args.n_docs}, max query/context/target "
        f"{preset['max_query']}/{preset['max_context']}/{preset['max_target']}; {args.device}, "
        f"{torch.get_num_threads()} threads"
    )
    for trainer in (our_trainer, their_trainer):  # keeps each block's `train_runtime` dict out of the report
        trainer.remove_callback(PrinterCallback)
    return Setup(
        {"ours": (our_trainer, our_clock), "theirs": (their_trainer, their_clock)}, description, parameters
    )


def resolve_preset(args: argparse.Namespace, name: str) -> dict[str, int]:
    preset = dict(PRESETS[name], name=name)
    for key, field in (("batch_size", "batch"), ("steps", "steps"), ("warmup", "warmup")):
        if getattr(args, key) is not None:
            preset[field] = getattr(args, key)
    if preset["warmup"] < 1 or preset["steps"] < 1:
        raise SystemExit("--warmup and --steps must be >= 1 (the clock starts at the end of a warm-up step)")
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1; got {args.repeats}")
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"--threads must be >= 1; got {args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to torch")
    return preset


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    names = args.preset or list(DEFAULT_PRESETS)
    presets = [resolve_preset(args, name) for name in names]
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    ratios = {}
    for preset in presets:
        with tempfile.TemporaryDirectory(prefix="hf_rag_bench_") as tmp:
            print(f"== preset {preset['name']}")
            setup = build(args, preset, Path(tmp))
            ratios[preset["name"]] = run(setup, preset, args.repeats)
    print("== summary")
    for name, ratio in ratios.items():  # the realistic preset, when run, is printed last
        print(f"{name} train-step throughput ratio (ours / transformers RAG): {ratio:.2f}")


def run(setup: Setup, preset: dict[str, int], repeats: int) -> float:
    """Alternate timed blocks of both sides; print each block, and return the ratio of the median throughputs."""
    n_ours, n_theirs = setup.parameters
    print(setup.description)
    print(
        f"trainable parameters: ours {n_ours:,}, transformers RAG {n_theirs:,} (document index frozen in both)"
    )
    print(
        f"each block: {preset['warmup']} warm-up + {preset['steps']} timed steps, {repeats} blocks per side"
    )
    results: dict[str, list[float]] = {"ours": [], "theirs": []}
    for repeat in range(repeats):
        order = ("ours", "theirs") if repeat % 2 == 0 else ("theirs", "ours")
        for side in order:
            trainer, clock = setup.trainers[side]
            results[side].append(timed_block(trainer, clock, preset["warmup"], preset["batch"]))
        print(
            f"repeat {repeat + 1}: ours {results['ours'][-1]:.2f} examples/s, "
            f"transformers RAG {results['theirs'][-1]:.2f} examples/s, "
            f"ratio {results['ours'][-1] / results['theirs'][-1]:.2f}",
            flush=True,
        )
    path = retrieval_path_ms(setup, batches=3 * preset["steps"])
    print(
        f"retrieval path per batch (query vectors -> generator inputs), median: ours {path['ours']:.1f} ms, "
        f"transformers RAG {path['theirs']:.1f} ms"
    )
    ours_median, theirs_median = statistics.median(results["ours"]), statistics.median(results["theirs"])
    print(f"median: ours {ours_median:.2f} examples/s, transformers RAG {theirs_median:.2f} examples/s")
    paired = sorted(o / t for o, t in zip(results["ours"], results["theirs"], strict=True))
    print(
        f"per-repeat ratios (adjacent blocks): median {statistics.median(paired):.2f}, "
        f"range {paired[0]:.2f}-{paired[-1]:.2f}"
    )
    print(json.dumps({"ours": results["ours"], "transformers_rag": results["theirs"]}))
    return ours_median / theirs_median


if __name__ == "__main__":
    main()
