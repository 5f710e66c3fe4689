"""Pretraining the frozen backbones of the offline analogs from the synthetic world.

Imp starts from pretrained SigLIP and pretrained LLMs and keeps both frozen in stage 1; the nano
analogs have no such checkpoints, so they are pretrained here, briefly, on the world's backbone
corpus (``backbone/vision_pairs.jsonl``, ``backbone/lm_corpus.txt``) and ``scenes.jsonl``:

* :mod:`.tokenizer`: the byte-level BPE the family shares, trained on everything the models read.
* :mod:`.contrastive`: the vision tower, SigLIP's recipe at toy scale (sigmoid pairwise loss).
* :mod:`.classification`: the ablation arm "classification-pretrained" (the same tower and a linear
  classifier, cross-entropy); :mod:`.vision` holds what both arms share and the arm "no
  pretraining" (a randomly initialised tower).
* :mod:`.lm`: next-token prediction on packed blocks of the corpus for one family's causal LM.
* :mod:`.build`: the ``backbones`` stage, which trains all of them (side by side without a GPU).

:mod:`.inputs` reads the world's files and :mod:`.loop` is the training loop they all run. Every
recipe is deterministic for a seed (weights from ``torch.manual_seed``, batch order from a seeded
``torch.Generator``) on a given machine and thread count, which the caller sets. Every output
directory is written atomically: a killed run never leaves a half-saved checkpoint.
"""
