"""DVC stage `latency-paper@<profile>`: the step impkit.steps.latency_paper (what it does and writes:
its docstring).

python -m stages.latency_paper imp-3b-196
"""

from impkit.stage import run_step
from impkit.steps import latency_paper

if __name__ == "__main__":
    run_step(latency_paper)
