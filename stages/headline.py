"""DVC stage `headline@<preset>`: the step impkit.steps.headline (what it does and writes: its docstring).

python -m stages.headline nano-3b
"""

from impkit.stage import run_step
from impkit.steps import headline

if __name__ == "__main__":
    run_step(headline)
