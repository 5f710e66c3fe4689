"""DVC stage `release@<preset>`: the step impkit.steps.release (what it does and writes: its docstring).

python -m stages.release nano-3b
"""

from impkit.stage import run_step
from impkit.steps import release

if __name__ == "__main__":
    run_step(release)
