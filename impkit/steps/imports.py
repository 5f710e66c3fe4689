"""Step `import`: a published Imp checkpoint (a local folder of MILVLG/imp-v1-3b, imp-v1.5-2b,
imp-v1.5-3b, imp-v1.5-4b or imp-v1.5-3b-196) to a release in releases/<name> (``impkit.importer``),
which the evaluate, export, parity and latency steps then take by that name.

``impkit import FOLDER --name imp-v1.5-3b`` imports any folder; ``python -m stages.imports NAME``
(dvc.yaml's import@<name>) imports the entry NAME of params.yaml's ``imports.checkpoints``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from impkit import paths
from impkit.steps import add_params_argument

NAME = "import"
HELP = "import a published Imp checkpoint folder as a release (releases/<name>)"
OMP_WAIT_POLICY = "PASSIVE"  # sleeping OpenMP threads: small torch kernels, shared cores (impkit.stage)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="the checkpoint folder, or a name of params.yaml's imports.checkpoints")
    parser.add_argument("--name", help="the release's name (default: the entry's name, else the folder's)")
    parser.add_argument("--vision-tower", help="a local copy of the SigLIP tower the checkpoint's config names")
    parser.add_argument("--out", help="the release folder (default: releases/<name>)")
    add_params_argument(parser)


def main(args: argparse.Namespace) -> None:
    from impkit.config import ImportsConfig, load_section
    from impkit.importer import import_checkpoint

    folder, tower, name = Path(args.source), args.vision_tower, args.name
    if not folder.is_dir():  # an entry of params.yaml
        cfg = load_section(ImportsConfig, "imports", path=args.params)
        if args.source not in cfg.checkpoints:
            raise FileNotFoundError(
                f"{args.source}: no such folder, nor an entry of params.yaml's imports.checkpoints "
                f"(entries: {sorted(cfg.checkpoints)})"
            )
        entry = cfg.checkpoints[args.source]
        folder, tower, name = Path(entry.folder), tower or entry.vision_tower, name or args.source
    name = name or folder.name
    import_checkpoint(folder, Path(args.out) if args.out else paths.release(name), name=name, vision_tower=tower)
