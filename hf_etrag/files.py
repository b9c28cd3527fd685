"""The names of the files and folders hf-etrag writes into a model, run or evaluation folder, defined once."""

__all__ = [
    "GENERATOR_TOKENIZER_FOLDER",
    "INDEX_FOLDER",
    "METRICS_FILE",
    "MODEL_CARD_FILE",
    "PREDICTIONS_FILE",
    "READER_WARMUP_FOLDER",
    "RECIPE_FILE",
    "RETRIEVER_TOKENIZER_FOLDER",
]

INDEX_FOLDER = "passage_index"  # a saved `PassageIndex` (corpus, embeddings, FAISS index)
RETRIEVER_TOKENIZER_FOLDER = "retriever_tokenizer"
GENERATOR_TOKENIZER_FOLDER = "generator_tokenizer"  # only when the generator's tokenizer differs
MODEL_CARD_FILE = "README.md"
RECIPE_FILE = "etrag_recipe.json"  # the recipe `hf-etrag train` ran, read back by `hf-etrag evaluate`
READER_WARMUP_FOLDER = "reader_warmup"  # the reader warm-up's run, inside `output_dir`
METRICS_FILE = "metrics.json"  # written by the evaluation, read by the model card
PREDICTIONS_FILE = "predictions.jsonl"
