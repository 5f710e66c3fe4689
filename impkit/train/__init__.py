"""Training: backbone pretraining for the offline analogs, stage-1 alignment, stage-2 LoRA / full tuning."""
