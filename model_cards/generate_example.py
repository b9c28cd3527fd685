"""Regenerate `model_cards/example-tiny-lora-rag-sequence.md`: the card of a tiny run, rendered by the package.

Offline, on CPU, in about a minute: a synthetic knowledge base, a tiny BERT retriever and a tiny BART generator
(random weights saved as `tiny-bert/` and `tiny-bart/` in a scratch folder, so that the card names them as bases),
LoRA on the generator, 30 training steps with an evaluation at the end, `evaluation-test/metrics.json` from
`hf_etrag.evaluation.checkpoint.evaluate_model` (what `hf-etrag evaluate` runs), then
`EtragTrainer.create_model_card`.

    python model_cards/generate_example.py
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import AutoModel, AutoModelForSeq2SeqLM

from hf_etrag import EtragModel, PassageIndex, tokenize_corpus
from hf_etrag.adapters.apply import PeftArguments, apply_peft
from hf_etrag.data import make_synthetic_knowledge_base, tokenize_qa_dataset
from hf_etrag.evaluation.checkpoint import evaluate_model
from hf_etrag.modeling.tokenization import EtragTokenizers
from hf_etrag.tiny_models import tiny_bart_config, tiny_bert_config, train_wordpiece_tokenizer
from hf_etrag.training.arguments import EtragTrainingArguments
from hf_etrag.training.callbacks import refresh_index
from hf_etrag.training.trainer import EtragTrainer

EXAMPLE = Path(__file__).resolve().parent / "example-tiny-lora-rag-sequence.md"
DATASET = "hf_etrag.data.make_synthetic_knowledge_base(n_people=12, seed=1)"


def main() -> None:
    torch.manual_seed(0)
    kb = make_synthetic_knowledge_base(n_people=12, seed=1)
    tokenizer = train_wordpiece_tokenizer(
        list(kb.corpus["text"]) + list(kb.train["question"]), vocab_size=400
    )
    ids = (tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id)
    workdir = Path(tempfile.mkdtemp())
    cwd = os.getcwd()
    os.chdir(
        workdir
    )  # relative base paths: the card names `tiny-bert` and `tiny-bart`, not a temporary folder
    try:
        AutoModel.from_config(tiny_bert_config(len(tokenizer), hidden_size=32, layers=1)).save_pretrained(
            "tiny-bert"
        )
        AutoModelForSeq2SeqLM.from_config(
            tiny_bart_config(len(tokenizer), *ids, d_model=32, layers=1)
        ).save_pretrained("tiny-bart")
        model = EtragModel.from_pretrained_retriever_generator("tiny-bert", "tiny-bart", n_docs=3)
        corpus = tokenize_corpus(kb.corpus, tokenizer, max_passage_length=48)
        index = PassageIndex(corpus)
        model.set_index(index)
        refresh_index(model)
        apply_peft(model, PeftArguments(use_peft=True, lora_r=8, lora_alpha=16))
        passage_ids = [str(i) for i in corpus["id"]]
        train = tokenize_qa_dataset(kb.train, tokenizer, passage_ids=passage_ids)
        evaluation = tokenize_qa_dataset(kb.test, tokenizer, passage_ids=passage_ids)
        args = EtragTrainingArguments(
            output_dir="run",
            hub_model_id="your-name/tiny-lora-rag-sequence",
            max_steps=30,
            per_device_train_batch_size=8,
            learning_rate=5e-3,
            retriever_learning_rate=1e-3,
            refresh_steps=10,
            eval_strategy="steps",
            eval_steps=30,
            logging_steps=10,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            seed=0,
            disable_tqdm=True,
        )
        trainer = EtragTrainer(
            model,
            args,
            train_dataset=train,
            eval_dataset=evaluation,
            processing_class=EtragTokenizers(tokenizer),
        )
        trainer.train()
        evaluate_model(  # into run/evaluation-test/, where `hf-etrag evaluate` writes by default
            model,
            EtragTokenizers(tokenizer),
            evaluation,
            task="open_qa",
            task_settings=SimpleNamespace(relation_template="", max_history_turns=None, negative_label=None),
            source="synthetic",
            split="test",
            checkpoint_dir="run",
            max_new_tokens=16,
        )
        trainer.create_model_card(dataset_name=DATASET, tags=["example"])
        shutil.copyfile(Path("run") / "README.md", EXAMPLE)
    finally:
        os.chdir(cwd)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"wrote {EXAMPLE}")


if __name__ == "__main__":
    main()
