"""Module 03B's training recipe: AdamW (and SGD), global-norm clipping, warmup + cosine, one loop."""

from g2c.training.clip import clip_grad_norm_
from g2c.training.loop import History, train
from g2c.training.optim import SGD, AdamW
from g2c.training.schedule import cosine_with_warmup

__all__ = ["SGD", "AdamW", "History", "clip_grad_norm_", "cosine_with_warmup", "train"]
