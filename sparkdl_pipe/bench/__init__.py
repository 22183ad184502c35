"""Benchmarks: the product measured side by side with its limits and hand-wired baselines."""
