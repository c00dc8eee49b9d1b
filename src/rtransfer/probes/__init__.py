"""Probes of how far a tuned model drifted from its base: latent PCA shift and CKA (latent.py),
token KL, rank shift and shifted tokens (tokens.py). Heavy libraries are imported where used."""
