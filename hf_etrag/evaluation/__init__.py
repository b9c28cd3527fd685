"""Evaluation: predict (retrieve + generate), task scoring, report."""
