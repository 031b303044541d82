"""Harness fixtures for milvus (placeholder: being written)."""
