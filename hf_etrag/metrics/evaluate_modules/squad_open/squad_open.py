"""`evaluate` wrapper for open-domain QA: SQuAD v1.1 exact match and token F1."""

import datasets
import evaluate

from hf_etrag.metrics.qa import squad_scores

_DESCRIPTION = """\
SQuAD v1.1 exact match and token F1 for free-form (generated) answers, each the maximum over the
gold answers of a question and averaged over questions. Scores are fractions in [0, 1].
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated answer strings.
    references: list of gold answers, each a string or a list of acceptable strings.
Returns:
    exact_match: mean exact match after SQuAD normalisation, in [0, 1].
    f1: mean token F1 after SQuAD normalisation, in [0, 1].
Examples:
    >>> metric = hf_etrag.metrics.load_metric("squad_open")
    >>> metric.compute(predictions=["the cat"], references=[["Cat", "a dog"]])
    {'exact_match': 1.0, 'f1': 1.0}
"""

_CITATION = """\
@inproceedings{rajpurkar-etal-2016-squad,
    title = "{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text",
    author = "Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy",
    booktitle = "Proceedings of EMNLP",
    year = "2016",
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SquadOpen(evaluate.Metric):
    """Delegates to `hf_etrag.metrics.qa.squad_scores`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
                ),
            ],
        )

    def _compute(self, predictions: list[str], references: list[str | list[str]]) -> dict[str, float]:
        return squad_scores(predictions, references)
