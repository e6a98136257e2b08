"""experiments.reporting: rendering finished runs and their analyses as Markdown, CSV, JSON and plots."""
