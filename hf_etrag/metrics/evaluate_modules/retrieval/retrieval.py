"""`evaluate` wrapper for retrieval: recall@k (hit rate), MRR and mean gold rank."""

import datasets
import evaluate

from hf_etrag.metrics.retrieval import retrieval_scores

_DESCRIPTION = """\
Retrieval metrics over ranked passage ids. A query is a hit at k when any of its gold ids is among
the top-k retrieved ids (DPR-style top-k accuracy). Ids are all strings or all integers.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of ranked retrieved-id lists, best first.
    references: list of gold ids, each one id or a list of acceptable ids.
    ks: cut-offs to report recall at, default (1, 5, 10).
Returns:
    recall@k: fraction of queries with a gold id in the top k, for each k in ks.
    mrr: mean reciprocal rank of the first gold id over the whole list (0 for a miss).
    mean_gold_rank: mean 1-based rank over queries whose gold was found, None if none was.
Examples:
    >>> metric = hf_etrag.metrics.load_metric("retrieval")
    >>> metric.compute(predictions=[[4, 2, 9]], references=[2], ks=[1, 2])
    {'recall@1': 0.0, 'recall@2': 1.0, 'mrr': 0.5, 'mean_gold_rank': 2.0}
"""

_CITATION = """\
@inproceedings{karpukhin-etal-2020-dense,
    title = "Dense Passage Retrieval for Open-Domain Question Answering",
    author = "Karpukhin, Vladimir and Oguz, Barlas and Min, Sewon and Lewis, Patrick and Wu, Ledell
              and Edunov, Sergey and Chen, Danqi and Yih, Wen-tau",
    booktitle = "Proceedings of EMNLP",
    year = "2020",
}
"""


def _features(id_type: str) -> list[datasets.Features]:
    ranked = datasets.Sequence(datasets.Value(id_type))
    return [
        datasets.Features({"predictions": ranked, "references": datasets.Sequence(datasets.Value(id_type))}),
        datasets.Features({"predictions": ranked, "references": datasets.Value(id_type)}),
    ]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Retrieval(evaluate.Metric):
    """Delegates to `hf_etrag.metrics.retrieval.retrieval_scores`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # String ids are tried first because evaluate type-checks strings strictly, while an
            # int64 feature would silently coerce digit strings.
            features=_features("string") + _features("int64"),
        )

    def _compute(
        self,
        predictions: list[list[str | int]],
        references: list[str | int | list[str | int]],
        ks: tuple[int, ...] | list[int] = (1, 5, 10),
    ) -> dict[str, float | None]:
        return retrieval_scores(predictions, references, ks=ks)
