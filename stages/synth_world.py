"""DVC stage `world`: the step impkit.steps.world (what it does and writes: its docstring).

python -m stages.synth_world
"""

from impkit.stage import run_step
from impkit.steps import world

if __name__ == "__main__":
    run_step(world)
