"""impkit: reproduce, train, evaluate, quantize, measure and release the Imp family of LMMs."""

import os as _os

# OpenMP threads that spin while waiting for each other make small CPU kernels 3-6x slower on
# shared 2-vCPU machines (measured: nano-3b LoRA step 4 -> 13 samples/s). Let waiting threads sleep.
# It must be set before torch loads its OpenMP runtime, i.e. before anything imports torch; every
# impkit entry point imports this package first. An explicit setting by the user wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
