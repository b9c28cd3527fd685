"""`evaluate` wrapper for knowledge-grounded dialogue: unigram F1 and ROUGE-L."""

import datasets
import evaluate

from hf_etrag.metrics.dialogue import dialogue_scores

_DESCRIPTION = """\
Wizard-of-Wikipedia style response metrics on SQuAD-normalised whitespace tokens: unigram F1
and ROUGE-L (LCS-based F-measure, beta = 1), each the maximum over references and averaged over
responses. Scores are fractions in [0, 1].
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated responses.
    references: list of gold responses, each a string or a list of strings.
Returns:
    unigram_f1: mean unigram F1, in [0, 1].
    rouge_l: mean ROUGE-L F-measure, in [0, 1].
Examples:
    >>> metric = hf_etrag.metrics.load_metric("dialogue")
    >>> metric.compute(predictions=["i like cats"], references=["I like cats!"])
    {'unigram_f1': 1.0, 'rouge_l': 1.0}
"""

_CITATION = """\
@inproceedings{dinan2019wizard,
    title = {Wizard of {W}ikipedia: Knowledge-Powered Conversational Agents},
    author = {Dinan, Emily and Roller, Stephen and Shuster, Kurt and Fan, Angela and Auli, Michael
              and Weston, Jason},
    booktitle = {International Conference on Learning Representations},
    year = {2019},
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Dialogue(evaluate.Metric):
    """Delegates to `hf_etrag.metrics.dialogue.dialogue_scores`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
            ],
        )

    def _compute(self, predictions: list[str], references: list[str | list[str]]) -> dict[str, float]:
        return dialogue_scores(predictions, references)
