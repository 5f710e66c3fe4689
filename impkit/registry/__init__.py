"""Releases that outlive the next build: a record per release, a registry that accumulates them,
promotions, and a model card per release.

- ``record``: what one build of one preset gave (content id, provenance, data, training, every
  benchmark headline per backend and level, parity, sizes, latency, files), from the build's reports.
- ``store``: the registry folder (``registry/``): one record per release id, never erased by a
  rebuild; the same content gives the same id, so rebuilding with nothing changed adds nothing.
- ``card``: the model card (Hugging Face conventions: front matter, intended use, training data,
  Table 3 and Table 4 layouts, limitations).
"""

from impkit.registry.record import build_record, content_id
from impkit.registry.store import Registry, RegistryError

__all__ = ["Registry", "RegistryError", "build_record", "content_id"]
