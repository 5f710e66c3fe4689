"""Prefect flows over the DVC pipeline: the release flow (one task per DVC stage), the retrain flow
and the scheduled deployment (flows.serve)."""
