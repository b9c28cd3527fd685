"""Metrics checked against hand-computed values; the arithmetic is in the comments."""

import os
import socket

import numpy as np
import pytest

from hf_etrag.metrics import (
    METRIC_NAMES,
    dialogue_scores,
    exact_match,
    gold_rank,
    load_metric,
    metric_path,
    mrr,
    normalize_answer,
    per_relation_f1,
    re_micro_prf,
    recall_at_k,
    retrieval_scores,
    rouge_l,
    squad_scores,
    token_f1,
    unigram_f1,
)

# --- QA (SQuAD v1.1) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The  Cat!", "cat"),
        # lower -> delete ",;." -> drop a/an/the -> collapse spaces
        ("  An apple, a day; keeps THE doctor away.", "apple day keeps doctor away"),
        # articles only as whole words
        ("Theatre anthem", "theatre anthem"),
        # punctuation is deleted, not replaced by a space
        ("U.S.A. don't", "usa dont"),
        # punctuation goes before articles, so "the-cat" becomes one token "thecat"
        ("the-cat", "thecat"),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_takes_max_over_golds():
    assert exact_match("the Eiffel Tower", ["Paris", "Eiffel tower!"]) == 1.0
    assert exact_match("Paris, France", ["Paris", "France"]) == 0.0
    # a bare string is one answer, not a list of characters
    assert exact_match("c", "cat") == 0.0


def test_token_f1_partial_overlap():
    # pred {big, red, barn}, gold {red, barn}: common 2, P = 2/3, R = 2/2 = 1
    # F1 = 2 * (2/3) * 1 / (2/3 + 1) = (4/3) / (5/3) = 4/5
    assert token_f1("big red barn", ["red barn"]) == pytest.approx(4 / 5)


def test_token_f1_max_over_golds():
    # vs "barn": common 1, P = 1/2, R = 1 -> F1 = 1 / 1.5 = 2/3
    # vs "big red barn": common 2, P = 1, R = 2/3 -> F1 = (4/3) / (5/3) = 4/5; max = 4/5
    assert token_f1("red barn", ["barn", "big red barn"]) == pytest.approx(4 / 5)


def test_token_f1_counts_multiplicity():
    # pred [cat, cat, cat], gold [cat]: common min(3, 1) = 1, P = 1/3, R = 1 -> F1 = (2/3) / (4/3) = 1/2
    assert token_f1("cat cat cat", ["cat"]) == pytest.approx(1 / 2)


def test_article_only_answers_follow_squad_v1():
    # both normalise to "": strings equal (EM 1) but no shared token (F1 0), as in the v1.1 script
    assert exact_match("the", ["a"]) == 1.0
    assert token_f1("the", ["a"]) == 0.0


SQUAD_PREDICTIONS = ["Eiffel Tower", "big red barn", "London"]
SQUAD_REFERENCES = [["the Eiffel Tower", "Paris"], ["red barn"], ["Paris"]]
# EM: [1, 0, 0] -> 1/3; F1: [1, 4/5, 0] -> 1.8 / 3 = 0.6
SQUAD_EXPECTED = {"exact_match": 1 / 3, "f1": 0.6}


def test_squad_scores_are_fractions():
    assert squad_scores(SQUAD_PREDICTIONS, SQUAD_REFERENCES) == pytest.approx(SQUAD_EXPECTED)
    # a bare string reference is one gold answer
    assert squad_scores(["big red barn"], ["red barn"]) == pytest.approx({"exact_match": 0.0, "f1": 0.8})
    assert squad_scores([], []) == {"exact_match": 0.0, "f1": 0.0}


# --- Retrieval ------------------------------------------------------------------------------

RETRIEVED = [[3, 1, 2], [5, 6, 7], [9, 8, 4]]
GOLD = [1, {7, 5}, 42]  # ranks: 2, 1 (5 is first), not found


def test_gold_rank():
    assert gold_rank([3, 1, 2], 1) == 2
    assert gold_rank([5, 6, 7], {7, 5}) == 1
    assert gold_rank([3, 1, 2], 42) is None
    assert gold_rank([], 1) is None
    assert gold_rank(["a", "a", "b"], "b") == 3
    # a str gold is one id: were it iterated as {"a", "b"}, the rank would be 1
    assert gold_rank(["b", "a"], "ab") is None


def test_recall_at_k_and_mrr():
    # hits at k=1: only query 2 -> 1/3; at k=2 and k=5: queries 1 and 2 -> 2/3
    assert recall_at_k(RETRIEVED, GOLD, k=1) == pytest.approx(1 / 3)
    assert recall_at_k(RETRIEVED, GOLD, k=2) == pytest.approx(2 / 3)
    assert recall_at_k(RETRIEVED, GOLD, k=5) == pytest.approx(2 / 3)
    # MRR = (1/2 + 1/1 + 0) / 3 = 1/2; with k=1 the rank-2 hit is cut: (0 + 1 + 0) / 3 = 1/3
    assert mrr(RETRIEVED, GOLD) == pytest.approx(1 / 2)
    assert mrr(RETRIEVED, GOLD, k=1) == pytest.approx(1 / 3)


# mean_gold_rank over the found ones: (2 + 1) / 2 = 1.5
RETRIEVAL_EXPECTED = {"recall@1": 1 / 3, "recall@2": 2 / 3, "mrr": 1 / 2, "mean_gold_rank": 1.5}


def test_retrieval_scores():
    assert retrieval_scores(RETRIEVED, GOLD, ks=(1, 2)) == pytest.approx(RETRIEVAL_EXPECTED)
    assert list(retrieval_scores(RETRIEVED, GOLD)) == [
        "recall@1",
        "recall@5",
        "recall@10",
        "mrr",
        "mean_gold_rank",
    ]


def test_retrieval_nothing_found():
    assert retrieval_scores([[1, 2]], [3], ks=(1,)) == {"recall@1": 0.0, "mrr": 0.0, "mean_gold_rank": None}


def test_retrieval_accepts_numpy_ids():
    # FAISS returns int64 arrays; np.int64(1) hashes and compares equal to 1
    retrieved = np.array([[3, 1, 2], [5, 6, 7]])
    assert recall_at_k(retrieved, [1, np.int64(7)], k=2) == pytest.approx(1 / 2)


# --- Relation extraction ------------------------------------------------------------------


def test_re_negative_prediction_for_positive_gold_costs_recall_only():
    # guessed 1 (per:age), gold 2, correct 1: P = 1/1, R = 1/2, F1 = 1 / 1.5 = 2/3
    scores = re_micro_prf(["per:age", "no_relation"], ["per:age", "per:title"])
    assert scores == pytest.approx({"precision": 1.0, "recall": 1 / 2, "f1": 2 / 3})


def test_re_positive_prediction_for_negative_gold_costs_precision_only():
    # guessed 2, gold 1 (per:age), correct 1: P = 1/2, R = 1/1, F1 = 2/3
    scores = re_micro_prf(["per:age", "per:title"], ["per:age", "no_relation"])
    assert scores == pytest.approx({"precision": 1 / 2, "recall": 1.0, "f1": 2 / 3})


TACRED_PREDICTIONS = ["per:age", "no_relation", "org:founded", "no_relation", "per:title"]
TACRED_REFERENCES = ["per:age", "per:title", "no_relation", "no_relation", "per:age"]


# correct: row 0 -> 1; guessed: rows 0, 2, 4 -> 3; gold: rows 0, 1, 4 -> 3; P = R = F1 = 1/3
TACRED_EXPECTED = {"precision": 1 / 3, "recall": 1 / 3, "f1": 1 / 3}


def test_re_micro_tacred_mix():
    assert re_micro_prf(TACRED_PREDICTIONS, TACRED_REFERENCES) == pytest.approx(TACRED_EXPECTED)


def test_per_relation_f1():
    report = per_relation_f1(TACRED_PREDICTIONS, TACRED_REFERENCES)
    assert list(report) == ["org:founded", "per:age", "per:title"]
    # org:founded: guessed 1, gold 0, correct 0
    assert report["org:founded"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # per:age: guessed 1, gold 2, correct 1 -> P 1, R 1/2, F1 2/3
    assert report["per:age"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    # per:title: guessed 1 (row 4, wrong), gold 1 (row 1, missed)
    assert report["per:title"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


SEMEVAL_PREDICTIONS = ["Cause-Effect(e1,e2)", "Other", "Component-Whole(e2,e1)"]
SEMEVAL_REFERENCES = ["Cause-Effect(e1,e2)", "Cause-Effect(e1,e2)", "Other"]
# "Other" negative: correct 1, guessed 2 (rows 0, 2), gold 2 (rows 0, 1) -> 1/2 each
SEMEVAL_EXPECTED = {"precision": 0.5, "recall": 0.5, "f1": 0.5}


def test_re_semeval_other_label():
    scores = re_micro_prf(SEMEVAL_PREDICTIONS, SEMEVAL_REFERENCES, negative_label="Other")
    assert scores == pytest.approx(SEMEVAL_EXPECTED)
    # with the default "no_relation", "Other" is a positive label: correct 1, guessed 3, gold 3
    assert re_micro_prf(SEMEVAL_PREDICTIONS, SEMEVAL_REFERENCES)["f1"] == pytest.approx(1 / 3)


def test_re_zero_division_gives_zero():
    assert re_micro_prf(["no_relation"], ["no_relation"]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    # nothing guessed: precision 0.0 here (the official script would print 1.0); F1 is 0 either way
    assert re_micro_prf(["no_relation"], ["per:age"]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


# --- Dialogue -------------------------------------------------------------------------------


def test_rouge_l_hand_worked_lcs():
    # "cat sat on mat" (4) vs "cat was sitting on mat" (5): LCS = cat on mat = 3
    # P = 3/4, R = 3/5, F = 2 * (9/20) / (27/20) = 2/3
    assert rouge_l("The cat sat on the mat.", "A cat was sitting on a mat") == pytest.approx(2 / 3)


def test_rouge_l_is_order_sensitive_unlike_unigram_f1():
    # same bag of words, but the only common subsequences have length 1: P = R = F = 1/3
    assert unigram_f1("dogs chase cats", "cats chase dogs") == 1.0
    assert rouge_l("dogs chase cats", "cats chase dogs") == pytest.approx(1 / 3)
    assert rouge_l("", "cats") == 0.0


def test_unigram_f1_uses_squad_normalisation():
    assert unigram_f1("I don't know.", "i dont know") == 1.0
    # max over references: "cats" vs "i like cats" -> P = 1/3, R = 1 -> 1/2; vs "cats" -> 1
    assert unigram_f1("i like cats", ["dogs", "cats"]) == pytest.approx(1 / 2)


DIALOGUE_PREDICTIONS = ["the cat sat on the mat", "dogs chase cats"]
DIALOGUE_REFERENCES = ["a cat was sitting on a mat", "cats chase dogs"]
# unigram F1: common 3, P = 3/4, R = 3/5 -> 2/3; then 1 -> mean 5/6. ROUGE-L: 2/3, 1/3 -> mean 1/2
DIALOGUE_EXPECTED = {"unigram_f1": 5 / 6, "rouge_l": 1 / 2}


def test_dialogue_scores_average():
    assert dialogue_scores(DIALOGUE_PREDICTIONS, DIALOGUE_REFERENCES) == pytest.approx(DIALOGUE_EXPECTED)


# --- Input validation -----------------------------------------------------------------------


def test_length_mismatch_names_both_lengths():
    with pytest.raises(ValueError, match="1 predictions and 2 references"):
        squad_scores(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="2 predictions and 1 references"):
        re_micro_prf(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="1 predictions and 0 references"):
        dialogue_scores(["a"], [])
    with pytest.raises(ValueError, match="1 retrieved and 2 gold"):
        recall_at_k([[1]], [1, 2], k=1)


@pytest.mark.parametrize("k", [0, -1])
def test_bad_k_is_named(k):
    with pytest.raises(ValueError, match=f"k={k}"):
        recall_at_k(RETRIEVED, GOLD, k=k)
    with pytest.raises(ValueError, match=f"k={k}"):
        mrr(RETRIEVED, GOLD, k=k)
    with pytest.raises(ValueError, match=f"k={k}"):
        retrieval_scores(RETRIEVED, GOLD, ks=(1, k))


def test_bad_records_name_their_index():
    with pytest.raises(TypeError, match=r"references\[1\] must be a str or a list of str"):
        squad_scores(["a", "b"], ["a", 3])
    with pytest.raises(TypeError, match=r"references\[0\]"):
        dialogue_scores(["a"], [{"text": "a"}])
    with pytest.raises(TypeError, match=r"references\[0\].*item of type int"):
        squad_scores(["a"], [["a", 1]])
    with pytest.raises(TypeError, match=r"references\[1\] must be a str"):
        re_micro_prf(["a", "b"], ["a", None])
    with pytest.raises(TypeError, match=r"predictions\[0\] must be a str"):
        re_micro_prf([0], ["no_relation"])
    with pytest.raises(ValueError, match=r"references\[0\] is empty"):
        squad_scores(["a"], [[]])
    with pytest.raises(TypeError, match=r"retrieved\[0\] must be a sequence"):
        recall_at_k(["abc"], ["a"], k=1)
    with pytest.raises(TypeError, match=r"gold\[1\]"):
        mrr([[1], [2]], [1, None])
    with pytest.raises(ValueError, match=r"gold\[0\] is an empty collection"):
        mrr([[1]], [[]])


# --- Packaged `evaluate` modules ------------------------------------------------------------


@pytest.fixture(scope="module")
def offline():
    """Offline flags set, and any socket connection fails, so a Hub lookup cannot go unnoticed."""
    import evaluate

    def refuse(*args, **kwargs):
        raise OSError("network access attempted during an offline test")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_EVALUATE_OFFLINE", "1")
        # evaluate reads the variable at import time, which may already have happened
        patch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
        patch.setattr(socket.socket, "connect", refuse)
        yield


def test_metric_names_match_packaged_folders():
    folders = sorted(
        p.parent.name for p in metric_path("re_f1").parent.glob("*/*.py") if p.stem == p.parent.name
    )
    assert folders == sorted(METRIC_NAMES)
    with pytest.raises(ValueError, match="valid names are: dialogue, re_f1, retrieval, squad_open"):
        load_metric("bleu")


@pytest.mark.parametrize(
    ("name", "function", "predictions", "references", "kwargs", "expected"),
    [
        ("squad_open", squad_scores, SQUAD_PREDICTIONS, SQUAD_REFERENCES, {}, SQUAD_EXPECTED),
        ("squad_open", squad_scores, ["big red barn"], ["red barn"], {}, {"exact_match": 0.0, "f1": 0.8}),
        ("re_f1", re_micro_prf, TACRED_PREDICTIONS, TACRED_REFERENCES, {}, TACRED_EXPECTED),
        (
            "re_f1",
            re_micro_prf,
            SEMEVAL_PREDICTIONS,
            SEMEVAL_REFERENCES,
            {"negative_label": "Other"},
            SEMEVAL_EXPECTED,
        ),
        ("retrieval", retrieval_scores, RETRIEVED, [[1], [7, 5], [42]], {"ks": [1, 2]}, RETRIEVAL_EXPECTED),
        # q0 hit at rank 2, q1 missed: MRR = (1/2 + 0) / 2
        (
            "retrieval",
            retrieval_scores,
            [["d3", "d1"], ["d5"]],
            ["d1", "d9"],
            {"ks": [1]},
            {"recall@1": 0.0, "mrr": 0.25, "mean_gold_rank": 2.0},
        ),
        ("dialogue", dialogue_scores, DIALOGUE_PREDICTIONS, DIALOGUE_REFERENCES, {}, DIALOGUE_EXPECTED),
    ],
)
def test_evaluate_module_matches_function(offline, name, function, predictions, references, kwargs, expected):
    assert os.environ["HF_EVALUATE_OFFLINE"] == "1"
    metric = load_metric(name, keep_in_memory=True)
    result = metric.compute(predictions=predictions, references=references, **kwargs)
    assert result == function(predictions, references, **kwargs)
    assert result == pytest.approx(expected)
