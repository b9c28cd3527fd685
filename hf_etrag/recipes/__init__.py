"""Recipes: arguments and YAML, model and data assembly, the train/evaluate pipeline."""
