"""Synthetic data: coronary phantoms, simulated views, synthetic XA runs (tests, demo, benchmarks)."""
