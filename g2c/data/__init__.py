"""Seeded synthetic datasets with train/validation splits, sized for sub-second training runs."""

from g2c.data.synthetic import Dataset, regression, tokens

__all__ = ["Dataset", "regression", "tokens"]
