"""Dense pooling modules for ``[B, V, ...]`` tensors with optional ``[B, V]`` masks."""

from .attsets import AttSets

__all__ = ["AttSets"]
