"""Command-line tools (cross-validation, evaluation, reports, benchmarks) and their modules."""
