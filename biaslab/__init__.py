"""biaslab: probe the inductive bias of deep generative models."""
