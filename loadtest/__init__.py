"""Load and latency benchmarks. Nothing imports this package."""
