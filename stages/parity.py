"""DVC stage `parity@<preset>`: the step impkit.steps.parity (what it does and writes: its docstring).

python -m stages.parity nano-3b
"""

from impkit.stage import run_step
from impkit.steps import parity

if __name__ == "__main__":
    run_step(parity)
