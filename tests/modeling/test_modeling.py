import copy

import pytest
import torch
from transformers import AutoModel

from hf_etrag import EtragModel

from ..conftest import first_batch, grad_norm, make_config


def _batch(qa_train):
    batch = first_batch(qa_train, n=4)
    batch.pop("gold_passage_index")
    return batch


def test_save_load_round_trip_gives_identical_outputs(tmp_path, model_and_index, qa_train):
    model, index = model_and_index
    model.eval()
    batch = _batch(qa_train)
    before = model(**batch)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin")), "weights must be saved as safetensors only"

    loaded = EtragModel.from_pretrained(tmp_path)
    loaded.set_index(index)
    loaded.eval()
    after = loaded(**batch)
    torch.testing.assert_close(after.loss, before.loss, rtol=0, atol=0)
    torch.testing.assert_close(after.doc_scores, before.doc_scores, rtol=0, atol=0)
    assert torch.equal(after.retrieved_doc_indices, before.retrieved_doc_indices)


def _two_tower_model(tokenizer, index, **overrides) -> EtragModel:
    """A model with a separate document encoder, attached to `index`, in training mode."""
    torch.manual_seed(0)
    config = make_config(tokenizer, **overrides)
    config.doc_encoder = copy.deepcopy(config.query_encoder)
    model = EtragModel(config)
    model.set_index(index)
    model.train()
    return model


def test_gradients_reach_query_encoder_document_encoder_and_generator(tokenizer, _base_index, qa_train):
    model = _two_tower_model(tokenizer, _base_index)
    model(**_batch(qa_train)).loss.backward()
    assert grad_norm(model.query_encoder) > 0
    assert grad_norm(model.doc_encoder) > 0
    assert grad_norm(model.generator) > 0


def test_query_side_training_leaves_document_encoder_without_gradient(tokenizer, _base_index, qa_train):
    model = _two_tower_model(tokenizer, _base_index, train_doc_encoder=False)
    model(**_batch(qa_train)).loss.backward()
    assert grad_norm(model.query_encoder) > 0
    assert all(p.grad is None for p in model.doc_encoder.parameters())


def test_forward_without_index_explains_how_to_attach_one(tokenizer, qa_train):
    model = EtragModel(make_config(tokenizer))
    with pytest.raises(RuntimeError, match="set_index"):
        model(**_batch(qa_train))


@pytest.mark.parametrize("decoding", ["sequence", "token"])
def test_generate_returns_text(model_and_index, qa_train, tokenizer, decoding):
    model, _ = model_and_index
    batch = _batch(qa_train)
    sequences, doc_indices = model.generate(
        batch["input_ids"],
        batch["attention_mask"],
        max_new_tokens=4,
        decoding=decoding,
        return_doc_indices=True,
    )
    assert sequences.shape[0] == 4 and 1 <= sequences.shape[1] <= 4
    assert doc_indices.shape == (4, model.config.n_docs)
    texts = tokenizer.batch_decode(sequences, skip_special_tokens=True)
    assert len(texts) == 4 and all(isinstance(t, str) for t in texts)
    assert any(t.strip() for t in texts), "a random generator still emits some tokens"


def test_from_pretrained_retriever_generator_assembles_local_checkpoints(tmp_path, model_and_index):
    model, _ = model_and_index
    model.query_encoder.save_pretrained(tmp_path / "encoder")
    model.generator.save_pretrained(tmp_path / "generator")
    assembled = EtragModel.from_pretrained_retriever_generator(
        str(tmp_path / "encoder"), str(tmp_path / "generator"), n_docs=2, objective="rag_token"
    )
    assert assembled.config.n_docs == 2 and assembled.config.objective == "rag_token"
    reference = AutoModel.from_pretrained(tmp_path / "encoder")
    reference_weights = reference.state_dict()
    for name, ours in assembled.query_encoder.state_dict().items():
        assert torch.equal(ours, reference_weights[name]), f"{name} changed while assembling"


def test_bert2bert_generator_round_trip(tmp_path, tokenizer, _base_index, qa_train):
    """The demo's generator kind (`EncoderDecoderModel`) nests a composite config inside ours."""
    from transformers import EncoderDecoderConfig

    from hf_etrag.tiny_models import tiny_bert_config

    bert = tiny_bert_config(len(tokenizer), hidden_size=32, layers=1)
    generator_config = EncoderDecoderConfig.from_encoder_decoder_configs(bert, bert)
    generator_config.decoder_start_token_id = tokenizer.cls_token_id
    generator_config.pad_token_id = tokenizer.pad_token_id
    generator_config.eos_token_id = tokenizer.sep_token_id
    model = EtragModel(make_config(tokenizer, generator=generator_config))
    model.set_index(_base_index)
    model.eval()
    batch = _batch(qa_train)
    before = model(**batch).loss
    model.save_pretrained(tmp_path)
    loaded = EtragModel.from_pretrained(tmp_path)
    loaded.set_index(_base_index)
    loaded.eval()
    assert loaded.config.generator.model_type == "encoder-decoder"
    torch.testing.assert_close(loaded(**batch).loss, before, rtol=0, atol=0)
