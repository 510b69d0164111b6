"""mtvae: a Transformer VAE for symbolic music with a compressive-memory decoder."""

__version__ = "0.1.0"

__all__ = ["MusicVAE", "Sampling"]


def __getattr__(name):  # import torch and the model only when the API is used
    if name == "MusicVAE":
        from .api import MusicVAE

        return MusicVAE
    if name == "Sampling":
        from .generate import Sampling

        return Sampling
    raise AttributeError(name)
