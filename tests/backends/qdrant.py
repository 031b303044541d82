"""Harness fixtures for qdrant (placeholder: being written)."""
