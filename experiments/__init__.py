"""Experiments: training folds, evaluating, summarising and reporting runs (a library; tools/ holds the command lines)."""
