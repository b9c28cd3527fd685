"""The names of the files and folders hf-etrag writes into a model, run or evaluation folder, defined once."""

from .atomic import OutputKind, json_marker

__all__ = [
    "EVALUATION_OUTPUT",
    "GENERATOR_TOKENIZER_FOLDER",
    "INDEX_FOLDER",
    "INDEX_OUTPUT",
    "METRICS_FILE",
    "MODEL_CARD_FILE",
    "MODEL_OUTPUT",
    "PREDICTIONS_FILE",
    "READER_WARMUP_FOLDER",
    "RECIPE_FILE",
    "REPORT_FIGURES",
    "RETRIEVER_TOKENIZER_FOLDER",
    "TOKENIZER_OUTPUT",
]

INDEX_FOLDER = "passage_index"  # a saved `PassageIndex` (corpus, embeddings, FAISS index)
RETRIEVER_TOKENIZER_FOLDER = "retriever_tokenizer"
GENERATOR_TOKENIZER_FOLDER = "generator_tokenizer"  # only when the generator's tokenizer differs
MODEL_CARD_FILE = "README.md"
RECIPE_FILE = "etrag_recipe.json"  # the recipe `hf-etrag train` ran, read back by `hf-etrag evaluate`
READER_WARMUP_FOLDER = "reader_warmup"  # the reader warm-up's run, inside `output_dir`
METRICS_FILE = "metrics.json"  # written by the evaluation, read by the model card
PREDICTIONS_FILE = "predictions.jsonl"

# What each writer puts into its folder: how `hf_etrag.atomic` recognises an earlier output of the same kind (which
# it may replace) and refuses a folder that holds anything else.
INDEX_OUTPUT = OutputKind(
    name="passage index",
    marker="index_metadata.json",
    entries=("corpus", "embeddings.npy", "index.faiss", "index_metadata.json"),
    fix=f"Save the index into a folder of its own, such as {{folder}}/{INDEX_FOLDER} (where `hf-etrag train` puts it), "
    "or into a new or empty folder.",
)
REPORT_FIGURES = ("recall_at_k.png", "per_relation_f1.png", "retrieved_instances.png", "training_curves.png")
EVALUATION_OUTPUT = OutputKind(
    name="evaluation report",
    marker=METRICS_FILE,
    entries=(METRICS_FILE, PREDICTIONS_FILE, "report.md", *REPORT_FIGURES),
    fix="Pass a new or empty `--output_dir` (`output_dir=`); by default the report goes to "
    "<checkpoint>/evaluation-<split>.",
    recognise=json_marker(lambda metrics: {"checkpoint", "task", "n_examples"} <= metrics.keys()),
)
MODEL_OUTPUT = OutputKind(
    name="model",
    marker="config.json",
    entries=("config.json", "generation_config.json", "model*.safetensors*", "*_adapter"),
    fix="Save the model into a new or empty folder, or into one that holds an earlier hf-etrag model (a config.json "
    "with model_type 'etrag').",
    shares_folder=True,
    recognise=json_marker(lambda config: config.get("model_type") == "etrag"),
)
TOKENIZER_OUTPUT = OutputKind(
    name="tokenizer",
    marker="tokenizer_config.json",
    entries=(
        "tokenizer_config.json",
        "tokenizer.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
        "spiece.model",
        "sentencepiece.bpe.model",
        "chat_template.jinja",
        "chat_template.json",
    ),
    fix=f"Save the tokenizers into a model folder of their own (they go into its {RETRIEVER_TOKENIZER_FOLDER}/ and "
    f"{GENERATOR_TOKENIZER_FOLDER}/), or into a new or empty folder.",
)
