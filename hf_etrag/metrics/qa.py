"""Open-domain QA metrics: SQuAD v1.1 answer normalisation, exact match and token F1.

Scores are fractions in `[0, 1]`, not the percentages printed by the official SQuAD script
(multiply by 100 to compare with published tables).
"""

import re
import string
from collections import Counter

from hf_etrag.metrics._validation import mean_per_record

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Normalise an answer exactly as the official SQuAD v1.1 evaluation script does.

    Steps, in order: lower-case, delete ASCII punctuation, replace the articles *a*, *an*, *the*
    with a space, collapse runs of whitespace.

    ```python
    >>> normalize_answer("The  Cat!")
    'cat'
    ```
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _answer_list(answers: str | list[str]) -> list[str]:
    # A bare string is one answer; iterating it would silently score character by character.
    golds = [answers] if isinstance(answers, str) else list(answers)
    if not golds:
        raise ValueError("answers must contain at least one gold answer")
    return golds


def _tokens_f1(prediction_tokens: list[str], gold_tokens: list[str]) -> float:
    """Bag-of-tokens F1 between two token lists (SQuAD v1.1 `f1_score` after tokenisation).

    Returns 0.0 when the lists share no token, including when either is empty.
    """
    common = Counter(prediction_tokens) & Counter(gold_tokens)
    return overlap_f1(sum(common.values()), len(prediction_tokens), len(gold_tokens))


def overlap_f1(overlap: int, n_predicted: int, n_reference: int) -> float:
    """F1 of `overlap` shared tokens between a prediction and a reference of the given lengths (0.0 if none)."""
    if overlap == 0:
        return 0.0
    precision = overlap / n_predicted
    recall = overlap / n_reference
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, answers: str | list[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0.

    `answers` may be a single string or a non-empty list of acceptable answers.
    """
    normalized = normalize_answer(prediction)
    return max(float(normalized == normalize_answer(gold)) for gold in _answer_list(answers))


def token_f1(prediction: str, answers: str | list[str]) -> float:
    """Maximum SQuAD token F1 of `prediction` over the gold `answers`.

    Tokens are the whitespace-separated words of `normalize_answer` output.
    """
    prediction_tokens = normalize_answer(prediction).split()
    golds = _answer_list(answers)
    return max(_tokens_f1(prediction_tokens, normalize_answer(gold).split()) for gold in golds)


def squad_scores(predictions: list[str], references: list[str | list[str]]) -> dict[str, float]:
    """Corpus-level SQuAD scores: `{"exact_match": ..., "f1": ...}`, each a mean in `[0, 1]`.

    - `predictions[i]` is the generated answer string for question `i`.
    - `references[i]` is its gold answer, or a list of acceptable gold answers (max is taken).

    Raises `ValueError` on length mismatch or an empty gold list, and `TypeError` (naming the
    record index) when a record is not a string / list of strings. Empty inputs score 0.0.
    """
    return mean_per_record(predictions, references, {"exact_match": exact_match, "f1": token_f1})
