"""Relation-extraction scores with a negative ("no relation") class, counted the TACRED way.

The counting follows the official TACRED scorer (Zhang et al., 2017):

- *correct*: `prediction == gold` and `gold != negative_label`
- *guessed*: `prediction != negative_label`
- *gold total*: `gold != negative_label`

so predicting the negative label for a positive example costs recall only, and predicting a
positive label for a negative example costs precision only. Precision, recall and F1 are fractions
in `[0, 1]`; any zero denominator gives 0.0. (The official script instead reports precision 1.0
when nothing was guessed; F1 is 0.0 either way.)

For SemEval-2010 Task 8 pass `negative_label="Other"`; note its official scorer reports a
*macro*-F1 over relation types, which `per_relation_f1` lets you compute but `re_micro_prf` is not.
"""

from collections import Counter

from hf_etrag.metrics._validation import check_same_length, check_str


def _counts(
    predictions: list[str], references: list[str], negative_label: str
) -> tuple[Counter[str], Counter[str], Counter[str]]:
    check_same_length("predictions", predictions, "references", references)
    correct: Counter[str] = Counter()
    guessed: Counter[str] = Counter()
    gold: Counter[str] = Counter()
    for index, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        # Labels must be strings: an int label id would never equal the default "no_relation"
        # and every negative example would silently count as a positive one.
        check_str(prediction, "predictions", index)
        check_str(reference, "references", index)
        if prediction != negative_label:
            guessed[prediction] += 1
        if reference != negative_label:
            gold[reference] += 1
            if prediction == reference:
                correct[reference] += 1
    return correct, guessed, gold


def _prf(correct: int, guessed: int, gold: int) -> tuple[float, float, float]:
    precision = correct / guessed if guessed else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def re_micro_prf(
    predictions: list[str], references: list[str], negative_label: str = "no_relation"
) -> dict[str, float]:
    """Micro-averaged `{"precision", "recall", "f1"}` over all non-negative relation labels.

    Raises `ValueError` on length mismatch and `TypeError` (naming the index) for non-`str` labels.
    """
    correct, guessed, gold = _counts(predictions, references, negative_label)
    precision, recall, f1 = _prf(correct.total(), guessed.total(), gold.total())
    return {"precision": precision, "recall": recall, "f1": f1}


def per_relation_f1(
    predictions: list[str], references: list[str], negative_label: str = "no_relation"
) -> dict[str, dict[str, float]]:
    """Per-relation precision, recall, F1 and support (gold count), keyed by relation label.

    Every label seen in predictions or references except `negative_label` gets an entry, sorted
    by label, so a relation that is only ever hallucinated shows up with recall 0.0 and support 0.
    """
    correct, guessed, gold = _counts(predictions, references, negative_label)
    report: dict[str, dict[str, float]] = {}
    for label in sorted(guessed.keys() | gold.keys()):
        precision, recall, f1 = _prf(correct[label], guessed[label], gold[label])
        report[label] = {"precision": precision, "recall": recall, "f1": f1, "support": gold[label]}
    return report
