"""Our RAG losses equal transformers' own `get_nll` for the same generator weights, passages and scores."""

import pytest
import torch
from transformers import (
    DPRConfig,
    DPRQuestionEncoder,
    RagConfig,
    RagSequenceForGeneration,
    RagTokenForGeneration,
)

from hf_etrag.objectives import ObjectiveInputs

from ..conftest import first_batch


def _hf_rag(rag_class, model):
    question_config = DPRConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    config = RagConfig.from_question_encoder_generator_configs(
        question_config, model.generator.config, n_docs=3
    )
    return rag_class(
        config=config, question_encoder=DPRQuestionEncoder(question_config), generator=model.generator
    )


@pytest.mark.parametrize(
    ("objective", "rag_class"),
    [("rag_sequence", RagSequenceForGeneration), ("rag_token", RagTokenForGeneration)],
)
def test_loss_equals_transformers_get_nll(model_and_index, qa_train, objective, rag_class):
    model, _ = model_and_index

    model.set_objective(objective)
    model.eval()
    batch = first_batch(qa_train, n=4)
    batch.pop("gold_passage_index")
    output = model(**batch)

    # transformers' convention: the decoder reads [start, y_1..y_n, eos, pad...] and get_nll shifts it left.
    labels = batch["labels"]
    start = model.generator.config.decoder_start_token_id
    pad = model.generator_pad_id
    target = torch.cat(
        [torch.full_like(labels[:, :1], start), labels.masked_fill(labels == -100, pad)], dim=1
    )
    contexts, context_mask = model.build_contexts(
        batch["input_ids"], batch["attention_mask"], output.retrieved_doc_indices
    )
    with torch.no_grad():
        seq_logits = model.generator(
            input_ids=contexts,
            attention_mask=context_mask,
            decoder_input_ids=target.repeat_interleave(3, dim=0),
        ).logits
        expected = _hf_rag(rag_class, model).get_nll(
            seq_logits, output.doc_scores, target, epsilon=0.0, n_docs=3
        )

    inputs = ObjectiveInputs(output.doc_scores, output.target_logprobs, (labels != -100).long())
    ours = model.objective.per_example_nll(inputs)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(output.loss, expected.mean(), rtol=1e-5, atol=1e-5)


def test_rag_token_differs_from_rag_sequence():
    """The two parity tests compare different quantities: with passage-dependent token scores the
    marginalisations disagree."""
    from hf_etrag.objectives import RagSequenceLoss, RagTokenLoss

    generator = torch.Generator().manual_seed(0)
    logprobs = torch.log_softmax(torch.randn(2, 3, 4, 7, generator=generator), dim=-1)[..., 0]
    inputs = ObjectiveInputs(
        torch.randn(2, 3, generator=generator), logprobs, torch.ones(2, 4, dtype=torch.long)
    )
    sequence_nll = RagSequenceLoss().per_example_nll(inputs)
    token_nll = RagTokenLoss().per_example_nll(inputs)
    assert not torch.allclose(token_nll, sequence_nll, atol=1e-3)
