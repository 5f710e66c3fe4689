"""Synthetic twins of the benchmarks, built from the world's held-out split and written in the
benchmarks' official file formats, so that ``impkit score <benchmark>`` scores them exactly as it
scores the real files.

Layout written under ``out_dir`` (every image path is relative to the held-out images folder)::

    twins.json                          what was built: per benchmark its files, sizes, score call
    <benchmark>/prompts.jsonl           {id, image, prompt, benchmark}: what a runner asks, the prompt
                                        being the exact text after "<image>\\n" (impkit.eval.prompts)
    <benchmark>/gold.jsonl              {id, answer}: the answer that scores full marks
    vqav2/questions.json, annotations.json
    gqa/testdev_balanced_questions.json
    vizwiz/val.json
    textvqa/TextVQA_0.5.1_val.json
    sqa/problems.json, pid_splits.json
    pope/questions/coco_pope_{adversarial,popular,random}.json
    mme/ground_truth/<subtask>.txt      eval-tool lines without the prediction column
    mmbench/MMBench_DEV_EN.tsv, mmbench_cn/MMBench_DEV_CN.tsv   with an image_path column
    mmvet/mm-vet.json

Prompt ids are the benchmark's own question ids (VQAv2/TextVQA ``question_id``, GQA ``qid``,
VizWiz ``image``, ScienceQA ``pid``, MMBench ``index``, MM-Vet key), ``<split>/<question_id>``
for POPE and ``<subtask>/<line>`` for MME. ``impkit.eval.benchmarks.write_predictions`` turns a
runner's ``{id: answer}`` into the prediction file the scorer reads.

Each benchmark's module (``impkit/eval/benchmarks/<name>.py``) names its twin builder;
``generate.generate_twins`` builds every registered benchmark's twin. The builders that several
benchmarks share live here: short answers (VQAv2, GQA, VizWiz, TextVQA), multiple choice
(ScienceQA, MMBench), yes/no (POPE, MME), open-ended (MM-Vet), and ``common``.

Every twin draws from its own generator seeded by (seed, benchmark): the same world, seed and
sizes give byte-identical files, and resizing one twin leaves the others unchanged.
"""

from impkit.eval.twins.common import MANIFEST, load_heldout, read_prompts

__all__ = ["MANIFEST", "load_heldout", "read_prompts"]
