"""Generative models and their networks.

Importing this package does not import torch: `parameter_count` works from
layer plans, so the API can report model sizes without loading torch.
"""

from biaslab.models.architectures import parameter_count

__all__ = ["parameter_count"]
