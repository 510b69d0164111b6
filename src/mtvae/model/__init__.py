"""The model: rotary attention, compressive memory, bar encoder, decoder, and MTVAE."""

from .mtvae import MTVAE

__all__ = ["MTVAE"]
