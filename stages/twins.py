"""DVC stage `twins`: the step impkit.steps.twins (what it does and writes: its docstring).

python -m stages.twins
"""

from impkit.stage import run_step
from impkit.steps import twins

if __name__ == "__main__":
    run_step(twins)
