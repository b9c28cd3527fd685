"""Knowledge-grounded dialogue metrics (Wizard of Wikipedia): unigram F1 and ROUGE-L.

Both work on whitespace tokens of the SQuAD-normalised text (`normalize_answer`), which is what
KILT's downstream scorer does. ParlAI's own F1 replaces punctuation with a space instead of
deleting it, so e.g. "don't" is two tokens there and one here; expect small differences.
"""

from hf_etrag.metrics._validation import mean_per_record
from hf_etrag.metrics.qa import normalize_answer, overlap_f1, token_f1


def unigram_f1(prediction: str, reference: str | list[str]) -> float:
    """Unigram (bag-of-words) F1 between a response and its reference(s); max over references."""
    return token_f1(prediction, reference)


def _lcs_length(first: list[str], second: list[str]) -> int:
    # Classic O(n*m) dynamic programme keeping one row; responses are short, so no need for more.
    if len(second) > len(first):
        first, second = second, first
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for j, other in enumerate(second, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def _rouge_l_single(prediction_tokens: list[str], reference_tokens: list[str]) -> float:
    return overlap_f1(
        _lcs_length(prediction_tokens, reference_tokens), len(prediction_tokens), len(reference_tokens)
    )


def rouge_l(prediction: str, reference: str | list[str]) -> float:
    """Sentence-level ROUGE-L F-measure (beta = 1) from the longest common subsequence.

    With `L = LCS(pred, ref)` over normalised whitespace tokens: `P = L / len(pred)`,
    `R = L / len(ref)`, `F = 2PR / (P + R)`; 0.0 when `L == 0`. Max over references.
    """
    references = [reference] if isinstance(reference, str) else list(reference)
    if not references:
        raise ValueError("reference must contain at least one string")
    prediction_tokens = normalize_answer(prediction).split()
    return max(_rouge_l_single(prediction_tokens, normalize_answer(ref).split()) for ref in references)


def dialogue_scores(predictions: list[str], references: list[str | list[str]]) -> dict[str, float]:
    """Corpus means `{"unigram_f1": ..., "rouge_l": ...}` in `[0, 1]`.

    `references[i]` is the gold response or a list of them. Raises `ValueError` on length mismatch
    and `TypeError` (naming the index) for records that are not strings / lists of strings.
    Empty inputs score 0.0.
    """
    return mean_per_record(predictions, references, {"unigram_f1": unigram_f1, "rouge_l": rouge_l})
