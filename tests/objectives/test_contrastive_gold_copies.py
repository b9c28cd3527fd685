"""The `contrastive` auxiliary loss does not count the positive as its own negative: when a query's gold passage is
also among the batch's retrieved passages, that retrieved copy (same corpus row) is left out of the softmax. With the
copy counted, two equal logits share the probability and the loss cannot fall below log 2."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from hf_etrag import EtragModel
from hf_etrag.objectives.cotraining import contrastive_loss

from ..conftest import first_batch, make_config


def _peaked_case():
    """Two queries; passages [a, gold0-copy, b, gold1-copy, gold0, gold1]: each query points at its gold passage."""
    torch.manual_seed(0)
    basis = torch.eye(8)
    passages = torch.stack([basis[0], basis[1], basis[2], basis[3], basis[1], basis[3]])
    ids = torch.tensor([10, 11, 12, 13, 11, 13])
    queries = 30.0 * torch.stack([basis[1], basis[3]])
    return queries, passages, ids, torch.tensor([4, 5])


def test_retrieved_copies_of_the_gold_passage_are_not_negatives():
    queries, passages, ids, positive = _peaked_case()
    loss = contrastive_loss(queries, passages, positive, passage_ids=ids)
    assert (
        float(loss) < 1e-6
    )  # the retriever ranks the gold passage first by a wide margin: nothing left to learn
    # the same as cross-entropy over the passages without the copies (rows 1 and 3)
    kept = torch.tensor([0, 2, 4, 5])
    want = F.cross_entropy(queries @ passages[kept].T, torch.tensor([2, 3]))
    torch.testing.assert_close(loss, want)
    # counting the copy as a negative (no ids: the old behaviour) puts the loss at log 2 or above
    counted = contrastive_loss(queries, passages, positive)
    assert float(counted) >= math.log(2) - 1e-6


def test_masking_copies_keeps_gradients_finite_and_changes_nothing_without_copies():
    queries, passages, ids, positive = _peaked_case()
    queries = (queries / 30.0).requires_grad_(True)
    loss = contrastive_loss(queries, passages, positive, temperature=0.5, passage_ids=ids)
    loss.backward()
    assert torch.isfinite(queries.grad).all()
    distinct = torch.arange(6)
    with_ids = contrastive_loss(queries, passages, positive, passage_ids=distinct)
    without = contrastive_loss(queries, passages, positive)
    torch.testing.assert_close(with_ids, without)


def test_model_leaves_the_retrieved_gold_copy_out(tokenizer, _base_index, qa_train, monkeypatch):
    """Through `EtragModel.forward`: the gold passage is retrieved, and the query vector points at it (peaked
    scores). The correct loss is ~0; with the retrieved copy counted as a negative it stays >= log 2."""
    torch.manual_seed(0)
    model = EtragModel(make_config(tokenizer, auxiliary_losses={"contrastive": 1.0}, similarity="dot"))
    model.set_index(copy.deepcopy(_base_index))
    batch = first_batch(qa_train, n=3)
    gold = batch["gold_passage_index"]
    assert bool((gold >= 0).all())
    n_passages = len(_base_index)
    # every query retrieves its gold passage (second) between two other rows
    doc_indices = torch.stack(
        [torch.tensor([(int(g) + 1) % n_passages, int(g), (int(g) + 2) % n_passages]) for g in gold]
    )
    table = torch.randn(
        n_passages, model.config.query_encoder.hidden_size, generator=torch.Generator().manual_seed(1)
    )
    monkeypatch.setattr(
        model, "document_vectors", lambda rows, device, fresh=None: table[rows.cpu()].to(device)
    )
    monkeypatch.setattr(model, "encode_queries", lambda input_ids, attention_mask: 5.0 * table[gold])
    model.train()
    output = model(**batch, doc_indices=doc_indices)
    contrastive = float(output.loss_terms["contrastive_loss"])
    assert contrastive < 1e-3, contrastive
