"""Where a build puts everything: the one place for the workspace's paths.

Stage scripts and the ``impkit`` command take their paths from here; ``dvc.yaml`` mirrors them in
each stage's deps and outs (DVC needs them written out), and ``tests/test_paths.py`` fails when
``dvc.yaml`` names a path under ``data/``, ``models/``, ``releases/`` or ``reports/`` that this module
does not give, or when a stage script writes a path literal of its own. Paths are relative to the
workspace root, where DVC runs the stages.
"""

from __future__ import annotations

from pathlib import Path

# -- data ------------------------------------------------------------------------------------------

WORLD = Path("data/world")  # the synthetic world: sources, images, held-out split
WORLD_SOURCES = WORLD / "sources"
WORLD_IMAGES = WORLD / "images"
HELDOUT = WORLD / "heldout"  # never trained on: the twins and the held-out check are built from it
HELDOUT_IMAGES = HELDOUT / "images"

ASSEMBLED = Path("data/assembled")  # the training mixtures, after the quality gate
QUARANTINE = Path("data/quarantine")  # every record the intake refused, with its reason
CACHE = Path("data/cache")  # per machine, kept between builds (persist in dvc.yaml)
IMAGE_CHECK_CACHE = CACHE / "image_checks.sqlite"
TWINS = Path("data/twins")  # the ten benchmarks' synthetic twins, in their official formats

# -- models ----------------------------------------------------------------------------------------

BACKBONES = Path("models/backbones")
BACKBONES_TIMINGS = Path("reports/backbones_timings.json")  # how long each backbone took (outside the folder)


def aligned(preset: str) -> Path:
    """Stage 1's model: the projector trained, the rest frozen."""
    return Path("models/aligned") / preset


def checkpoints(stage: str, preset: str) -> Path:
    """Trainer checkpoints of ``stage`` (align or tune), so an interrupted run resumes."""
    return Path("models/checkpoints") / f"{stage}-{preset}"


def adapters(preset: str) -> Path:
    """Stage 2's LoRA adapter before it is merged into the release."""
    return Path("models/adapters") / preset


def release(preset: str) -> Path:
    """The release folder (``impkit.release``): the contract every later stage reads."""
    return Path("releases") / preset


def gguf(preset: str) -> Path:
    """The release's GGUF files, one LLM file per quantization level and the mmproj."""
    return Path("models/gguf") / preset


def paper_size(profile: str) -> Path:
    """Random-weight GGUF pairs with the shapes of a real Imp model (latency at the paper's sizes)."""
    return Path("models/paper-size") / profile


# -- reports ---------------------------------------------------------------------------------------

DATA_QUALITY = Path("reports/data_quality")  # Great Expectations' Data Docs
DATA_METRICS = Path("reports/data_metrics.json")
# the assemble run's timings and image-cache counts: kept out of the manifest, which must depend on
# the inputs only (a rerun with the same inputs gives the same manifest and retrains nothing)
ASSEMBLE_TIMINGS = Path("reports/assemble_timings.json")
TIMINGS = Path("reports/timings.json")


def train_report(preset: str) -> Path:
    return Path("reports/train") / f"{preset}.json"


def train_curves(stage: str, preset: str) -> Path:
    """dvclive's folder for one training stage (``plots/metrics`` in it is what `dvc plots` reads)."""
    return Path("reports/train") / f"{stage}-{preset}"


EVAL_REPORTS = Path("reports/eval")


def eval_dir(preset: str) -> Path:
    return EVAL_REPORTS / preset


def eval_gguf_dir(preset: str) -> Path:
    return Path("reports/eval-gguf") / preset


def eval_gguf_summary(preset: str) -> Path:
    return Path("reports/eval-gguf") / f"{preset}.json"


def export_report(preset: str) -> Path:
    return Path("reports/export") / f"{preset}.json"


def parity_report(preset: str) -> Path:
    return Path("reports/parity") / f"{preset}.json"


LATENCY_REPORTS = Path("reports/latency")


def latency_report(target: str) -> Path:
    """A release's or a paper-size profile's latency (both are measured with the same protocol)."""
    return LATENCY_REPORTS / f"{target}.json"


def headline(preset: str) -> Path:
    return Path("reports/headline") / f"{preset}.json"


# -- the registry ------------------------------------------------------------------------------------

DVC_LOCK = Path("dvc.lock")  # what DVC recorded of each stage's deps and outputs (a release keeps its hashes)
PULLED = Path("pulled")  # releases fetched by id from the DVC remote (impkit releases pull)
REGISTRY = Path("registry")  # release records and model cards that accumulate over builds (impkit.registry)


def registry(preset: str) -> Path:
    """The records and model cards of a preset's releases."""
    return REGISTRY / preset


DASHBOARD = Path("dashboards/index.html")  # the static release dashboard
DRIFT_REPORTS = Path("dashboards/drift")  # each release's training data against the previous release's
TRADEOFFS = Path("reports/tradeoffs.json")  # the current releases' levels, for dvc plots
EVIDENTLY = Path("dashboards/evidently")  # the Evidently workspace (a project per family, a run per release)
