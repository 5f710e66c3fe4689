"""Deterministic synthetic world (images + LLaVA-format records) that the tiny Imp models train on."""

from impkit.data.synth.world import WorldSummary, generate_world

__all__ = ["WorldSummary", "generate_world"]
