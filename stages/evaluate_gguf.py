"""DVC stage `evaluate-gguf@<preset>`: the step impkit.steps.evaluate_gguf (what it does and writes: its docstring).

python -m stages.evaluate_gguf nano-3b
"""

from impkit.stage import run_step
from impkit.steps import evaluate_gguf

if __name__ == "__main__":
    run_step(evaluate_gguf)
