"""Model: presets -> transformers LlavaForConditionalGeneration (SigLIP + MLP projector + LLM)."""
