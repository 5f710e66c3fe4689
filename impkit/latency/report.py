"""What `stages.latency` measures and writes: a release (its GGUF levels and PyTorch) or a paper-size pair.

Both give one record: the protocol, the host (CPU model and flags, library versions), ``metrics``
(``"<device>/<level>"`` -> Table 4's medians, flat for ``dvc metrics``) and ``results`` (every
measurement with its runs, min and max). A paper-size record also carries the file sizes beside
Table 4's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from impkit.config import LatencyConfig
from impkit.latency.protocol import Protocol, host_info, table_row
from impkit.latency.runners import GGUFPair, TorchRelease, runner_for
from impkit.release import Release, gguf_levels, mmproj_file

log = logging.getLogger(__name__)


def _row(result: Mapping[str, Any]) -> dict[str, Any]:
    return table_row(result["summary"])


def _key(result: Mapping[str, Any]) -> str:
    model = result["model"]
    return f"{result['device']['name']}/{model.get('level', model['format'])}"


def measure_release(
    name: str, cfg: LatencyConfig, *, gguf_dir: str | Path, release_dir: str | Path | None
) -> dict[str, Any]:
    """Every exported level (``cfg.levels`` picks some) on each llama.cpp device, and the release
    folder on each PyTorch device (``release_dir`` None: skip PyTorch)."""
    levels = gguf_levels(gguf_dir)
    if cfg.levels is not None:
        missing = [level for level in cfg.levels if level not in levels]
        if missing:
            raise FileNotFoundError(f"latency.levels asks for {missing}; {gguf_dir} has {list(levels) or 'none'}")
        levels = {level: path for level, path in levels.items() if level in cfg.levels}
    if not levels:
        raise FileNotFoundError(f"no llm-<LEVEL>.gguf in {gguf_dir} (run the export stage first)")
    mmproj = mmproj_file(gguf_dir)
    targets = [GGUFPair(name, path, mmproj, level) for level, path in levels.items()]
    if release_dir is not None:
        Release.open(release_dir)  # a clear error now, not after the llama.cpp measurements
        targets.append(TorchRelease(name, Path(release_dir)))
    return _measure(name, "release", cfg, targets)


def measure_paper_size(profile: str, cfg: LatencyConfig, folder: str | Path, record: Mapping[str, Any]) -> dict:
    """The paper-size pair in ``folder`` (``impkit.export.paper_size``) at ``cfg.paper.levels``."""
    folder = Path(folder)
    mmproj = folder / record["mmproj"]["path"]
    targets = [GGUFPair(profile, folder / record["llm"][level]["path"], mmproj, level) for level in cfg.paper.levels]
    out = _measure(profile, "paper-size", cfg, targets)
    out["sizes"] = {level: record["sizes"][level] for level in cfg.paper.levels}
    out["generation"] = {
        key: record[key]
        for key in (
            "digest",
            "seed",
            "weight_std",
            "llm_params",
            "vision_params",
            "image_tokens",
            "vision_layers",
            "seconds",
        )
    }
    return out


def _measure(name: str, kind: str, cfg: LatencyConfig, targets: list) -> dict[str, Any]:
    protocol = Protocol.of(cfg)
    results = []
    for device in cfg.devices:
        runner = runner_for(device)
        for target in targets:
            if not runner.accepts(target):
                continue
            result = runner.measure(target, protocol)
            row = _row(result)
            log.info(
                "%s on %s: T_VE %.3f s, S_prompt %.1f tok/s, S_gen %.1f tok/s, T_total %.3f s (wall %.3f s)",
                _key(result),
                name,
                row["t_ve_s"],
                row["s_prompt_tps"],
                row["s_gen_tps"],
                row["t_total_s"],
                row["wall_s"],
            )
            results.append(result)
    if not results:
        raise FileNotFoundError(
            f"{name}: no device in latency.devices runs {sorted({t.format for t in targets})} models"
        )
    return {
        "target": name,
        "kind": kind,
        "protocol": protocol.describe(),
        "host": host_info(),
        "metrics": {_key(r): _row(r) for r in results},
        "results": results,
    }
