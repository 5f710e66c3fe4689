"""DVC stage `dashboards`: the step impkit.steps.dashboards (what it does and writes: its docstring).

python -m stages.dashboards
"""

from impkit.stage import run_step
from impkit.steps import dashboards

if __name__ == "__main__":
    run_step(dashboards)
