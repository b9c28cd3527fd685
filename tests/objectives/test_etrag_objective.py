"""The ETRAG objective: differentiable top-k over the training-instance memory, fused as soft prompts."""

import copy

import pytest
import torch

from hf_etrag import EtragModel, PassageIndex
from hf_etrag.data import EtragDataCollator, add_memory_index, build_instance_memory, tokenize_qa_dataset
from hf_etrag.training.callbacks import refresh_index

from ..conftest import grad_norm, make_config


@pytest.fixture
def etrag_setup(knowledge_base, tokenizer):
    def build(k=2, separate_doc_encoder=True, **kwargs):
        torch.manual_seed(0)
        config = make_config(tokenizer, objective="etrag", objective_kwargs={"k": k, "tau": 0.5, **kwargs})
        kwargs.setdefault("span_token_ids", None)
        if separate_doc_encoder:
            config.doc_encoder = copy.deepcopy(config.query_encoder)
        model = EtragModel(config)
        memory = PassageIndex(build_instance_memory(knowledge_base.train, tokenizer))
        model.set_index(memory)
        refresh_index(model)
        train = add_memory_index(tokenize_qa_dataset(knowledge_base.train, tokenizer))
        rows = [{key: train[i][key] for key in ("input_ids", "labels", "memory_index")} for i in range(4)]
        return model, EtragDataCollator(0, 0)(rows)

    return build


def test_gradients_reach_query_memory_projection_and_generator(etrag_setup):
    model, batch = etrag_setup(k=2, instances_with_grad=16)
    model.train()
    output = model(**batch)
    assert torch.isfinite(output.loss)
    assert output.retrieved_doc_indices.shape == (4, 2)
    output.loss.backward()
    assert grad_norm(model.query_encoder) > 0
    assert grad_norm(model.doc_encoder) > 0, "re-encoded memory rows carry gradient"
    assert grad_norm(model.objective.prompt_projection) > 0
    assert grad_norm(model.generator) > 0


def test_own_instance_is_never_a_candidate(etrag_setup):
    model, batch = etrag_setup(k=3, separate_doc_encoder=False)
    model.eval()
    query_vectors = model.encode_queries(batch["input_ids"], batch["attention_mask"])
    rows = model.objective.candidate_rows(model, query_vectors, batch["memory_index"])
    assert rows.shape == (4, 6)
    assert not torch.any(rows == batch["memory_index"].unsqueeze(1))
    # Searching from the own rows' stored vectors ranks each own row first: it is still left out.
    own_vectors = torch.from_numpy(model.index.embeddings[batch["memory_index"].numpy()])
    rows = model.objective.candidate_rows(model, own_vectors, batch["memory_index"])
    assert rows.shape == (4, 6) and not torch.any(rows == batch["memory_index"].unsqueeze(1))
    _, selection, _, _ = model.objective.select(model, query_vectors, batch["memory_index"])
    torch.testing.assert_close(selection.sum(-1), torch.ones(4, 3))


def test_rows_with_gradient_are_each_querys_best_candidates_first():
    from hf_etrag.objectives.etrag import EtragLoss

    rows = torch.tensor([[9, 2, 7], [1, 9, 3], [5, 4, 0]])
    order = EtragLoss.rows_by_rank(rows)
    assert order.tolist()[:3] == [9, 1, 5], "every query's first-ranked row before any second-ranked one"
    assert order.tolist() == [9, 1, 5, 2, 4, 7, 3, 0]


def test_span_masks_pick_head_tail_and_label_tokens():
    from hf_etrag.objectives.etrag import span_masks

    head, tail, sep = 11, 12, 3
    # [CLS] w @ h1 h2 @ w # t1 # w [SEP] l1 l2 [SEP] pad
    ids = torch.tensor([[2, 20, head, 21, 22, head, 23, tail, 24, tail, 25, sep, 26, 27, sep, 0]])
    mask = (ids != 0).long()
    masks = span_masks(ids, mask, [head, tail, sep])
    assert ids[0][masks[0, 0]].tolist() == [21, 22]
    assert ids[0][masks[0, 1]].tolist() == [24]
    assert ids[0][masks[0, 2]].tolist() == [26, 27]
    # A row without markers reads its whole (unpadded) length for every span.
    plain = torch.tensor([[2, 20, 21, 3, 0]])
    assert span_masks(plain, (plain != 0).long(), [head, tail, sep]).sum(-1).tolist() == [[4, 4, 4]]


def test_prompts_follow_the_query_at_the_embedding_norm(etrag_setup):
    """Seq2seq: each query keeps its token positions (the prompts come after its last token, so a BERT
    encoder's [CLS] stays at position 0), and the prompts start at the generator's token-embedding norm."""
    model, batch = etrag_setup(k=2)
    model.eval()
    with torch.no_grad():
        prompts = model.objective.soft_prompts(model, batch)["prompts"]
        assert prompts.shape[1] == 3 + 3 * 2
        embedding = model.generator.get_input_embeddings()
        expected_norm = embedding.weight.norm(dim=-1).mean()
        torch.testing.assert_close(prompts.norm(dim=-1), torch.full(prompts.shape[:2], float(expected_norm)))
        ids, mask = batch["input_ids"], batch["attention_mask"]
        mask = mask.clone()
        mask[1, -2:] = 0  # rows of different lengths
        inputs, attention = model.objective.prompted_inputs(model, ids, mask, prompts)
    for row in range(4):
        length = int(mask[row].sum())
        torch.testing.assert_close(inputs[row, :length], embedding(ids[row, :length]))
        torch.testing.assert_close(inputs[row, length : length + prompts.shape[1]], prompts[row])
        assert attention[row].tolist() == [1] * (length + prompts.shape[1]) + [0] * (
            attention.shape[1] - length - prompts.shape[1]
        )


def test_retriever_warmup_trains_the_retriever_not_the_generator(etrag_setup):
    model, batch = etrag_setup(k=2, retriever_warmup_steps=5, instances_with_grad=16)
    model.train()
    trainable = [p.requires_grad for p in model.generator.parameters()]
    model(**batch).loss.backward()
    assert grad_norm(model.generator) == 0
    assert grad_norm(model.doc_encoder) > 0 and grad_norm(model.query_encoder) > 0
    assert grad_norm(model.objective.prompt_projection) > 0
    assert [p.requires_grad for p in model.generator.parameters()] == trainable, "restored after the step"


def test_prompt_dependence_is_logged(etrag_setup):
    model, batch = etrag_setup(k=2)
    model.train()
    terms = model(**batch).loss_terms
    assert torch.isfinite(terms["prompt_shuffle_gain"])
    assert 0 < float(terms["selection_max_weight"]) <= 1


def test_k_zero_is_the_no_retrieval_baseline(etrag_setup):
    model, batch = etrag_setup(k=0)
    model.train()
    output = model(**batch)
    assert output.retrieved_doc_indices.shape == (4, 0)
    output.loss.backward()
    assert grad_norm(model.doc_encoder) == 0


def test_generation_and_round_trip(tmp_path, etrag_setup, tokenizer):
    model, batch = etrag_setup(k=2)
    sequences = model.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=3)
    assert sequences.shape[0] == 4
    assert all(isinstance(t, str) for t in tokenizer.batch_decode(sequences, skip_special_tokens=True))
    model.eval()
    before = model(**batch).loss
    model.save_pretrained(tmp_path)
    loaded = EtragModel.from_pretrained(tmp_path)
    loaded.set_index(model.index)
    loaded.eval()
    torch.testing.assert_close(loaded(**batch).loss, before)


def test_bad_options_are_rejected(tokenizer):
    with pytest.raises(ValueError, match="`tau` must be > 0"):
        EtragModel(make_config(tokenizer, objective="etrag", objective_kwargs={"tau": 0.0}))


def test_evaluation_encodes_each_memory_row_once_and_matches_fresh_encoding(etrag_setup):
    model, batch = etrag_setup(k=2)
    model.eval()
    objective = model.objective
    objective._stored_spans = None  # as for an index loaded from disk: no span vectors kept from a refresh
    query_vectors = model.encode_queries(batch["input_ids"], batch["attention_mask"])
    rows = objective.candidate_rows(model, query_vectors, None)
    calls = []
    encode = model.encode_token_states

    def counting_encode(ids, mask, side):
        calls.append(ids.shape[0])
        return encode(ids, mask, side=side)

    model.encode_token_states = counting_encode
    with torch.no_grad():
        vectors, spans = objective.encode_candidates(model, rows)
        again = objective.encode_candidates(model, rows)
    assert sum(calls) == len(torch.unique(rows)), "each distinct row encoded once, then served from the cache"
    torch.testing.assert_close(again[0], vectors)
    # The cached rows equal the training path's fresh encoding (no gradient budget, dropout off).
    objective.training = True
    with torch.no_grad():
        fresh_vectors, fresh_spans = objective.encode_candidates(model, rows)
    objective.training = False
    torch.testing.assert_close(vectors, fresh_vectors)
    torch.testing.assert_close(spans, fresh_spans)
    # A refreshed index (new embeddings) drops the cache.
    model.index.set_embeddings(model.index.embeddings.copy())
    with torch.no_grad():
        objective.encode_candidates(model, rows)
    assert sum(calls) == 3 * len(torch.unique(rows))


def _count_document_encodings(model):
    calls = []
    encode = model.encode_token_states

    def counting_encode(ids, mask, side):
        if side == "document":
            calls.append(ids.shape[0])
        return encode(ids, mask, side=side)

    model.encode_token_states = counting_encode
    return calls


def test_refresh_keeps_span_vectors_that_spare_the_encoder(etrag_setup):
    model, batch = etrag_setup(k=2, instances_with_grad=2)
    objective = model.objective
    model.eval()
    query_vectors = model.encode_queries(batch["input_ids"], batch["attention_mask"])
    rows = objective.candidate_rows(model, query_vectors, batch["memory_index"])
    # The fixture's refresh stored every row's span vectors with the current weights: evaluation reads them.
    calls = _count_document_encodings(model)
    with torch.no_grad():
        stored_vectors, stored_spans = objective.encode_candidates(model, rows)
    assert calls == [], "right after a refresh, evaluation encodes no memory row"
    objective._stored_spans = None  # forget them: the rows are encoded instead
    with torch.no_grad():
        encoded_vectors, encoded_spans = objective.encode_candidates(model, rows)
    assert sum(calls) == len(torch.unique(rows))
    torch.testing.assert_close(stored_vectors, encoded_vectors, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(stored_spans, encoded_spans, atol=1e-5, rtol=1e-4)
    # Training encodes only the rows with gradient; the others come from the refresh.
    refresh_index(model)
    model.train()
    calls.clear()
    vectors, spans = objective.encode_candidates(model, rows)
    assert sum(calls) == 2, "only `instances_with_grad` rows are encoded"
    with_grad = torch.from_numpy(objective.rows_by_rank(rows)[:2])
    reads_stored = ~torch.isin(rows, with_grad)
    torch.testing.assert_close(spans[reads_stored].detach(), stored_spans[reads_stored], atol=1e-5, rtol=1e-4)
    # With candidates_from_memory=False every candidate is encoded each step.
    objective.candidates_from_memory = False
    calls.clear()
    objective.encode_candidates(model, rows)
    assert sum(calls) == len(torch.unique(rows))
