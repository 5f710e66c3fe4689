"""DVC stage `evaluate@<preset>`: the step impkit.steps.evaluate (what it does and writes: its docstring).

python -m stages.evaluate nano-3b
"""

from impkit.stage import run_step
from impkit.steps import evaluate

if __name__ == "__main__":
    run_step(evaluate)
