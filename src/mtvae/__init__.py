"""mtvae: a Transformer VAE for symbolic music with a compressive-memory decoder."""

__version__ = "0.1.0"
