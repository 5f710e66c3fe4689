"""DVC stage `assemble`: the step impkit.steps.assemble (what it does and writes: its docstring).

python -m stages.assemble_data
"""

from impkit.stage import run_step
from impkit.steps import assemble

if __name__ == "__main__":
    run_step(assemble)
