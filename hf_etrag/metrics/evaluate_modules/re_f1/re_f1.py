"""`evaluate` wrapper for relation extraction: TACRED-style micro precision, recall and F1."""

import datasets
import evaluate

from hf_etrag.metrics.relation_extraction import re_micro_prf

_DESCRIPTION = """\
Micro-averaged precision, recall and F1 over relation labels, counted like the official TACRED
scorer: examples whose gold is the negative label never count as correct, and predicting the
negative label is never a guess. Zero denominators give 0.0. Scores are fractions in [0, 1].
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted relation labels (strings).
    references: list of gold relation labels (strings).
    negative_label: the "no relation" label, "no_relation" for TACRED, "Other" for SemEval-2010.
Returns:
    precision, recall, f1: micro-averaged over non-negative labels, in [0, 1].
Examples:
    >>> metric = hf_etrag.metrics.load_metric("re_f1")
    >>> metric.compute(predictions=["per:age", "no_relation"], references=["per:age", "per:title"])
    {'precision': 1.0, 'recall': 0.5, 'f1': 0.6666666666666666}
"""

_CITATION = """\
@inproceedings{zhang-etal-2017-position,
    title = "Position-aware Attention and Supervised Data Improve Slot Filling",
    author = "Zhang, Yuhao and Zhong, Victor and Chen, Danqi and Angeli, Gabor and Manning, Christopher D.",
    booktitle = "Proceedings of EMNLP",
    year = "2017",
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ReF1(evaluate.Metric):
    """Delegates to `hf_etrag.metrics.relation_extraction.re_micro_prf`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(
        self, predictions: list[str], references: list[str], negative_label: str = "no_relation"
    ) -> dict[str, float]:
        return re_micro_prf(predictions, references, negative_label=negative_label)
