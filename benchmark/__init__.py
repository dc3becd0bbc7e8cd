"""disentanglement-benchmark: large studies of disentangled representation learning in PyTorch."""

__version__ = "0.1.0"
