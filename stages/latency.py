"""DVC stage `latency@<preset>`: the step impkit.steps.latency (what it does and writes: its docstring).

python -m stages.latency nano-3b
"""

from impkit.stage import run_step
from impkit.steps import latency

if __name__ == "__main__":
    run_step(latency)
