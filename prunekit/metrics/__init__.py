"""Metrics the engine reports about models: sizes, parameter counts, sparsity."""
