"""Model: EtragConfig, EtragModel, generation, passage contexts, tokenizers."""
