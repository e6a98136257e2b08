"""experiments.analysis: numbers computed from finished runs: metrics, statistics, RespondRatio, protocol checks."""
