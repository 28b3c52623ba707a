"""Small Module 03 models the training exercises run: an MLP and a tiny token-level language model."""

from g2c.nn.models import MLP, TinyLM, seeded

__all__ = ["MLP", "TinyLM", "seeded"]
