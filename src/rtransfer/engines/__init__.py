"""Engines turn prompts into text or log-likelihoods. They know nothing about benchmarks."""
