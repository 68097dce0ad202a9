"""Helpers the agents use that are not agents themselves (embeddings)."""
