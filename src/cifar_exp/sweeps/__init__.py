"""Sweeps and searches: job folders and their continuation, the summary, the Optuna
search, the report and the study's plots."""
