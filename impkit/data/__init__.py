"""Data: LLaVA-format sources, the synthetic world, the mixture recipe and its quality gate."""
