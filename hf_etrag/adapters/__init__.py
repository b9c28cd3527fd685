"""PEFT adapters: apply, save, load, merge."""
