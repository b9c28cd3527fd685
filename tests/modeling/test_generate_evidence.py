"""`generate(..., return_dict_in_generate=True)` returns the passages it generated from, and `answer` turns a
question string into the decoded answer with that evidence."""

import copy

import numpy as np
import pytest
import torch

from hf_etrag import EtragModel, EtragTokenizers, PassageIndex, tokenize_corpus
from hf_etrag.data import tokenize_questions
from hf_etrag.modeling.answering import EtragAnswer, EtragGenerateOutput

from ..conftest import first_batch, make_config
from .test_decoder_only import _causal_config

QUESTIONS = ["Where was the first person born?", "What does the second person do?"]


def _search(model, input_ids, attention_mask, k):
    """What the index itself returns for these queries: `(scores, rows)` from FAISS (dropout off, as in
    `generate`)."""
    model.eval()
    with torch.no_grad():
        vectors = model.encode_queries(input_ids, attention_mask)
    return model.index.search(vectors.numpy(), k)


@pytest.mark.parametrize("decoding", ["sequence", "sequence_fast", "token"])
def test_dict_output_holds_the_index_passages_of_each_query(model_and_index, qa_train, decoding):
    model, index = model_and_index
    model.eval()
    batch = first_batch(qa_train, n=3)
    plain = model.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=4, decoding=decoding)
    output = model.generate(
        batch["input_ids"],
        batch["attention_mask"],
        max_new_tokens=4,
        decoding=decoding,
        return_dict_in_generate=True,
    )
    assert isinstance(output, EtragGenerateOutput)
    assert torch.equal(output.sequences, plain), "the dict carries exactly the default return's ids"

    scores, rows = _search(model, batch["input_ids"], batch["attention_mask"], model.config.n_docs)
    assert output.retrieved_doc_indices.tolist() == rows.tolist()
    # The index stores the document vectors: its inner products over the temperature are the model's scores.
    np.testing.assert_allclose(
        output.doc_scores.numpy(), scores / model.config.temperature, rtol=1e-5, atol=1e-5
    )
    corpus = index.corpus
    for example, example_rows in enumerate(rows.tolist()):
        passages = output.passages[example]
        assert [p.row for p in passages] == example_rows
        assert [p.id for p in passages] == [str(corpus[r]["id"]) for r in example_rows]
        assert all(p.title is None for p in passages), "this corpus has no title column"
        assert [p.text for p in passages] == [corpus[r]["text"] for r in example_rows]
        assert [p.score for p in passages] == pytest.approx(output.doc_scores[example].tolist())
        assert sum(p.probability for p in passages) == pytest.approx(1.0)


def test_passages_carry_the_titles_of_a_corpus_that_has_them(model_and_index, qa_train):
    model, index = model_and_index
    titled = index.corpus.add_column("title", [f"Title {row}" for row in range(len(index))])
    model.set_index(PassageIndex(titled, embeddings=index.embeddings.copy()))
    batch = first_batch(qa_train, n=2)
    output = model.generate(
        batch["input_ids"], batch["attention_mask"], max_new_tokens=2, return_dict_in_generate=True
    )
    for example in output.passages:
        assert [p.title for p in example] == [f"Title {p.row}" for p in example]


def test_default_return_is_unchanged_token_ids(model_and_index, qa_train):
    model, _ = model_and_index
    batch = first_batch(qa_train, n=2)
    sequences = model.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=3)
    assert isinstance(sequences, torch.Tensor) and sequences.dtype == torch.long


def test_answer_decodes_generate_ids_and_returns_the_retrieved_passages(model_and_index, tokenizer):
    model, _ = model_and_index
    tokenizers = EtragTokenizers(tokenizer)
    answers = model.answer(QUESTIONS, tokenizers=tokenizers, max_new_tokens=5)
    assert [a.question for a in answers] == QUESTIONS

    inputs = tokenize_questions(QUESTIONS, tokenizer)
    for question, result in zip(QUESTIONS, answers, strict=True):
        ids = torch.tensor([tokenizer(question, truncation=True, max_length=64)["input_ids"]])
        mask = torch.ones_like(ids)
        assert ids[0].tolist() in inputs["input_ids"]
        sequences = model.generate(ids, mask, max_new_tokens=5)
        assert result.answer == tokenizer.decode(sequences[0], skip_special_tokens=True).strip()
        _, rows = _search(model, ids, mask, model.config.n_docs)
        assert [p.row for p in result.passages] == rows[0].tolist()

    single = model.answer(QUESTIONS[0], tokenizers=tokenizers, max_new_tokens=5)
    assert isinstance(single, EtragAnswer)
    assert single.answer == answers[0].answer and single.passages == answers[0].passages


def test_answer_loads_the_tokenizers_saved_with_the_model(tmp_path, model_and_index, tokenizer):
    model, index = model_and_index
    model.save_pretrained(tmp_path)
    EtragTokenizers(tokenizer).save_pretrained(tmp_path)
    reloaded = EtragModel.from_pretrained(tmp_path)
    reloaded.set_index(index)
    expected = model.answer(QUESTIONS[0], tokenizers=EtragTokenizers(tokenizer), max_new_tokens=4)
    assert reloaded.answer(QUESTIONS[0], max_new_tokens=4) == expected


def test_answer_without_tokenizers_says_how_to_give_them(model_and_index):
    model, _ = model_and_index
    with pytest.raises(ValueError, match="tokenizers=EtragTokenizers"):
        model.answer(QUESTIONS[0])


def test_answer_with_a_generator_tokenizer_of_its_own(tokenizer, _base_index):
    """A decoder-only generator with its own tokenizer reads the question inside the prompt template."""
    generator_tokenizer = copy.deepcopy(tokenizer)
    torch.manual_seed(0)
    model = EtragModel(make_config(tokenizer, generator=_causal_config("gpt2", tokenizer))).eval()
    raw = _base_index.corpus.select_columns(["id", "text"])
    corpus = tokenize_corpus(raw, tokenizer, generator_tokenizer, max_passage_length=48)
    model.set_index(PassageIndex(corpus, embeddings=_base_index.embeddings.copy()))
    template = "question : {question} answer :"
    result = model.answer(
        QUESTIONS[1],
        tokenizers=EtragTokenizers(tokenizer, generator_tokenizer),
        generator_prompt_template=template,
        max_new_tokens=3,
    )
    prompt = tokenize_questions([QUESTIONS[1]], tokenizer, generator_tokenizer, 64, template)
    retriever_ids = torch.tensor(prompt["input_ids"])
    generator_ids = torch.tensor(prompt["generator_input_ids"])
    sequences = model.generate(
        retriever_ids,
        torch.ones_like(retriever_ids),
        generator_input_ids=generator_ids,
        generator_attention_mask=torch.ones_like(generator_ids),
        max_new_tokens=3,
    )
    assert result.answer == generator_tokenizer.decode(sequences[0], skip_special_tokens=True).strip()
    assert result.sequence == sequences[0].tolist()
    assert len(result.passages) == model.config.n_docs
