"""mnist-edge: train, quantize, export, run and benchmark handwritten-digit models."""

__version__ = "0.1.0"
