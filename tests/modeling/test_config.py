import pytest

from hf_etrag import EtragConfig

from ..conftest import make_config


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pooling", "max", "`pooling` must be one of"),
        ("similarity", "l2", "`similarity` must be one of"),
        ("temperature", 0.0, "`temperature` must be a positive number"),
        ("n_docs", 0, "`n_docs` must be an integer >= 1"),
        ("objective", "rag_sequnce", "`objective` 'rag_sequnce' is unknown"),
        ("max_context_length", 2, "`max_context_length` must be an integer >= 8"),
    ],
)
def test_invalid_fields_name_the_field(tokenizer, field, value, message):
    with pytest.raises(ValueError, match=message):
        make_config(tokenizer, **{field: value})


def test_sub_config_needs_known_model_type():
    with pytest.raises(ValueError, match="`generator` needs a `model_type`"):
        EtragConfig(generator={"model_type": "not-a-model"})


def test_config_round_trip(tmp_path, tokenizer):
    config = make_config(tokenizer, temperature=0.1, objective="rag_token")
    config.save_pretrained(tmp_path)
    loaded = EtragConfig.from_pretrained(tmp_path)
    assert loaded.objective == "rag_token"
    assert loaded.temperature == 0.1
    assert loaded.query_encoder.hidden_size == config.query_encoder.hidden_size
    assert loaded.generator.model_type == "bart"
    assert loaded.shared_encoders and loaded.is_seq2seq_generator
