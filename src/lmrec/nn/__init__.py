"""Reusable layers (transformer blocks, adaptors) and training objectives for the neural models."""
