"""Hub: push (with index and tokenizers) and the model card."""
