"""Benchmark harness: ModelRouter vs LiteLLM vs direct, against a local mock upstream (`make bench`)."""
