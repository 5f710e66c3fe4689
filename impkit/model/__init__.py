"""Model: presets -> transformers LlavaForConditionalGeneration (SigLIP + MLP projector + LLM)."""

# Registers the biased-head LLaVA class (Phi-2's lm_head.bias) with transformers' Auto classes, so
# `import impkit.model` is all a user needs to load such a release with AutoModelForImageTextToText.
from impkit.model import head_bias as _head_bias  # noqa: E402,F401
