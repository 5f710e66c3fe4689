"""DVC stage `import@<name>`: the step impkit.steps.imports (what it does and writes: its docstring).

python -m stages.imports imp-v1.5-3b
"""

from impkit.stage import run_step
from impkit.steps import imports

if __name__ == "__main__":
    run_step(imports)
