"""Training: EtragTrainingArguments, EtragTrainer, IndexRefreshCallback."""
