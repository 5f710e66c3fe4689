"""DVC stage `export@<preset>`: the step impkit.steps.export (what it does and writes: its docstring).

python -m stages.export nano-3b
"""

from impkit.stage import run_step
from impkit.steps import export

if __name__ == "__main__":
    run_step(export)
