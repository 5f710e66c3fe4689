"""impkit: reproduce, train, evaluate, quantize, measure and release the Imp family of LMMs."""

__version__ = "0.1.0"
