"""Evaluation: held-out checks now; the ten benchmarks in their official formats arrive with the evaluation stage."""
