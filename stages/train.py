"""DVC stage `align@<preset>` and `tune@<preset>`: the step impkit.steps.train (what it does and writes: its docstring).

python -m stages.train align nano-3b
python -m stages.train tune nano-3b
"""

from impkit.stage import run_step
from impkit.steps import train

if __name__ == "__main__":
    run_step(train)
