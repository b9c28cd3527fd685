import numpy as np
import pytest
from datasets import Dataset

from hf_etrag import PassageIndex, tokenize_corpus
from hf_etrag.retrieval import TokenStore


def test_token_store_batches_match_the_lists():
    rows = [[5, 6, 7], [8], [], [9, 10]]
    store = TokenStore.from_lists(rows)
    ids, mask = store.batch([3, 0, 1], pad_id=0)
    assert ids.tolist() == [[9, 10, 0], [5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1], [1, 0, 0]]
    assert store[2].tolist() == [] and store.lengths.tolist() == [3, 1, 0, 2]


def test_corpus_is_tokenised_once_into_arrow_columns(tokenized_corpus, tokenizer):
    index = PassageIndex(tokenized_corpus)
    first = tokenizer(tokenized_corpus[0]["text"], truncation=True, max_length=48)["input_ids"]
    assert index.retriever_tokens[0].tolist() == first
    assert index.generator_tokens is index.retriever_tokens  # one tokenizer: no second copy


def test_exact_search_save_and_load(tmp_path, tokenized_corpus):
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((len(tokenized_corpus), 8)).astype(np.float32)
    index = PassageIndex(tokenized_corpus, embeddings=embeddings, index_factory="Flat")
    queries = embeddings[[3, 10]] * 5.0
    scores, ids = index.search(queries, k=4)
    expected = np.argsort(-(queries @ embeddings.T), axis=1)[:, :4]
    assert ids.tolist() == expected.tolist()
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ embeddings.T, expected, 1), rtol=1e-5)

    index.save(tmp_path / "index")
    assert not list((tmp_path).glob(".index.tmp-*")), "the temporary folder is renamed, not left behind"
    loaded = PassageIndex.load(tmp_path / "index")
    assert loaded.search(queries, k=4)[1].tolist() == ids.tolist()
    assert loaded.passage_ids == index.passage_ids


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "corpus is empty"),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "Passage id 'a' appears more than once"),
        ([{"id": "a", "text": "x"}, {"id": "b", "text": "  "}], "Passage 'b' \\(row 1\\) has no text"),
        ([{"id": "a", "body": "x"}], "lacks column\\(s\\) \\['text'\\]"),
    ],
)
def test_bad_corpora_are_rejected_with_the_record_named(tokenizer, rows, message):
    corpus = Dataset.from_list(rows) if rows else Dataset.from_dict({"id": [], "text": []})
    with pytest.raises(ValueError, match=message):
        tokenize_corpus(corpus, tokenizer)


def test_search_rejects_bad_k_and_wrong_dimension(tokenized_corpus):
    index = PassageIndex(tokenized_corpus, embeddings=np.ones((len(tokenized_corpus), 4), np.float32))
    with pytest.raises(ValueError, match="`n_docs` must be between 1 and the corpus size"):
        index.search(np.ones((1, 4), np.float32), k=len(tokenized_corpus) + 1)
    with pytest.raises(ValueError, match="rebuild the index"):
        index.search(np.ones((1, 6), np.float32), k=2)
