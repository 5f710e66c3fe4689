"""DVC stage `backbones`: the step impkit.steps.backbones (what it does and writes: its docstring).

python -m stages.backbones
"""

from impkit.stage import run_step
from impkit.steps import backbones

if __name__ == "__main__":
    run_step(backbones)
