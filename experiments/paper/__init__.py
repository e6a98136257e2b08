"""experiments.paper: the paper's tables as runs and the numbers it prints."""
