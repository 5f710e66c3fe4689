"""Training data: lazy samples with image tokens and labels, padding into a LLaVA forward, modality-
and length-grouped batches, and mismatch / truncation reports.

Tiny tokenizer, images and model built here; nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import pickle

import numpy as np
import pytest
import torch

from impkit.data.templates import IGNORE_INDEX, TemplateError, get_template
from impkit.model.image_processing import ImageProcessor
from impkit.model.tokenizer import IMAGE_TOKEN, family_tokenizer, train_bpe
from impkit.train.dataset import DataCollator, SupervisedDataset
from impkit.train.sampler import ModalityLengthGroupedSampler, chunked, padding_waste

N_IMAGE = 16  # 32 px images, 8 px patches
IMAGE_SIZE = 32

CORPUS = [
    "What colour is the square? The square is red.",
    "How many circles are there? There are two circles.",
    "Where is the triangle? The triangle is on the left.",
    "Describe the image in detail. A small blue circle sits next to a large green square.",
    "Tell me a story about a fox. The quick brown fox jumps over the lazy dog.",
    # paragraph breaks: "\n\n" at the end of a text is one pre-token, so BPE learns the merge
    *["First paragraph.\n\n", "Second paragraph.\n\n\nThird paragraph."] * 4,
]


def _qa(question: str, answer: str, image: bool) -> list[dict[str, str]]:
    return [{"from": "human", "value": f"<image>\n{question}" if image else question}, {"from": "gpt", "value": answer}]


RECORDS = [
    {
        "id": "shapes:0",
        "image": "a/red.png",
        "conversations": _qa("What colour is the square?", "The square is red.", True),
    },
    {
        "id": "text:0",
        "conversations": _qa("Tell me a story about a fox.", "The quick brown fox jumps over the lazy dog.", False),
    },
    {
        "id": "shapes:1",
        "image": "b/wide.png",
        "conversations": _qa("How many circles are there?", "There are two circles.", True)
        + _qa("Where is the triangle?", "The triangle is on the left.", False)
        + _qa("What colour is the square?", "The square is red.", False),
    },
    {
        "id": "text:1",
        "conversations": _qa("How many circles are there?", "There are two circles.", False)
        + _qa("Where is the triangle?", "The triangle is on the left.", False),
    },
    {
        "id": "shapes:2",
        "image": "a/tall.png",
        "conversations": _qa(
            "Describe the image in detail.", "A small blue circle sits next to a large green square.", True
        ),
    },
    {"id": "text:2", "conversations": _qa("Where is the triangle?", "On the left.", False)},
    {
        "id": "text:long",
        "conversations": _qa("Tell me a story about a fox.", "The quick brown fox jumps over the lazy dog.", False)
        + _qa("How many circles are there?", "There are two circles.", False)
        + _qa("Where is the triangle?", "The triangle is on the left.", False)
        + _qa("Describe the image in detail.", "A small blue circle sits next to a large green square.", False)
        + _qa("What colour is the square?", "The square is red.", False),
    },
    # an answer opening with a paragraph break: "assistant\n" + "\n\nThe" merges across the boundary
    {
        "id": "shapes:mismatch",
        "image": "a/red.png",
        "conversations": _qa("Describe the image.", "\n\nThe square is red.", True),
    },
]

IMAGES = {
    "a/red.png": ((40, 40), (200, 30, 30)),
    "b/wide.png": ((64, 24), (30, 200, 30)),
    "a/tall.png": ((20, 50), (30, 30, 200)),
}


@pytest.fixture(scope="module")
def tokenizer():
    return family_tokenizer(train_bpe(CORPUS * 20, vocab_size=300), "qwen2")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("train_data"))


def write_records(root):
    """The test records (one blank line among them) and their images, under ``root``."""
    from PIL import Image

    for rel, (size, colour) in IMAGES.items():
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, colour).save(root / "images" / rel)
    lines = [json.dumps(r) for r in RECORDS]
    lines.insert(3, "")  # a blank line is skipped
    (root / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _dataset(data, tokenizer, records=None, **kwargs):
    kwargs.setdefault("max_length", None)
    return SupervisedDataset(
        records or data / "records.jsonl",
        data / "images",
        tokenizer,
        "qwen2",
        image_processor=ImageProcessor(size=IMAGE_SIZE),
        num_image_tokens=N_IMAGE,
        image_length_words=N_IMAGE,
        **kwargs,
    )


@pytest.fixture
def dataset(data, tokenizer):
    return _dataset(data, tokenizer)


def _supervised_text(tokenizer, labels: torch.Tensor) -> str:
    return tokenizer.decode([t for t in labels.tolist() if t != IGNORE_INDEX])


# --- samples ------------------------------------------------------------------------------------


def test_samples_hold_image_tokens_labels_and_pixels(dataset, tokenizer):
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert len(dataset) == len(RECORDS)
    for i, record in enumerate(RECORDS):
        sample = dataset[i]
        assert sample["id"] == record["id"]
        ids, labels = sample["input_ids"], sample["labels"]
        assert ids.dtype == labels.dtype == torch.long and ids.shape == labels.shape
        is_image = ids == image_id
        if "image" in record:
            assert int(is_image.sum()) == N_IMAGE
            where = torch.nonzero(is_image).flatten()
            assert where.tolist() == list(range(int(where[0]), int(where[0]) + N_IMAGE))  # one contiguous run
            assert (labels[is_image] == IGNORE_INDEX).all()
            pixels = sample["pixel_values"]
            assert pixels.dtype == torch.float32 and pixels.shape == (3, IMAGE_SIZE, IMAGE_SIZE)
        else:
            assert not is_image.any() and sample["pixel_values"] is None
        # exactly the answers (and their end markers) are supervised
        answers = [turn["value"] for turn in record["conversations"] if turn["from"] == "gpt"]
        assert _supervised_text(tokenizer, labels) == "".join(a + "<|im_end|>" for a in answers)
    assert dataset[-1]["id"] == RECORDS[-1]["id"]
    with pytest.raises(IndexError):
        dataset[len(RECORDS)]


def test_pixels_are_the_processed_image(dataset, data):
    from PIL import Image

    with Image.open(data / "images" / "b" / "wide.png") as image:
        expected = ImageProcessor(size=IMAGE_SIZE)([image])[0]
    assert torch.equal(dataset[2]["pixel_values"], expected)


def test_index_is_offsets_and_lengths_not_records(data, tokenizer, tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_bytes((data / "records.jsonl").read_bytes())
    ds = _dataset(data, tokenizer, records=path)
    assert ds.offsets.dtype == np.int64 and len(ds.offsets) == len(RECORDS) + 1
    assert ds.lengths.dtype == np.int32 and ds.has_image.dtype == np.bool_
    assert ds.has_image.tolist() == ["image" in r for r in RECORDS]
    words = [sum(len(t["value"].split()) for t in r["conversations"]) for r in RECORDS]
    assert ds.lengths.tolist() == [w + (N_IMAGE if "image" in r else 0) for w, r in zip(words, RECORDS, strict=True)]
    lengths, has_image = ds.modality_lengths
    assert lengths is ds.lengths and has_image is ds.has_image
    # no parsed record is held: an edit on disk (same byte length) shows on the next access
    before = _supervised_text(ds.tokenizer, ds[0]["labels"])
    path.write_bytes(path.read_bytes().replace(b"The square is red.", b"The square is tan.", 1))
    assert before == "The square is red.<|im_end|>"
    assert _supervised_text(ds.tokenizer, ds[0]["labels"]) == "The square is tan.<|im_end|>"


def test_bad_line_is_reported_with_its_number(tmp_path, tokenizer):
    (tmp_path / "records.jsonl").write_text(json.dumps(RECORDS[1]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"records.jsonl:2"):
        _dataset(tmp_path, tokenizer, records=tmp_path / "records.jsonl")


def test_pickles_without_the_file_handle_and_loads_in_workers(dataset):
    dataset[0]  # opens the file
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._fd is None and torch.equal(clone[1]["input_ids"], dataset[1]["input_ids"])
    # spawned workers: each gets the dataset only by pickling it (what this test is about), and none
    # inherits what other tests left in this process (a forked worker of a process that ran Prefect's
    # test server exits with code 1 when Prefect's exit hooks run in it)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=3, collate_fn=DataCollator(0), num_workers=2, multiprocessing_context="spawn"
    )
    serial = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=DataCollator(0))
    for a, b in zip(loader, serial, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _same_sample(a, b) -> bool:
    return a["id"] == b["id"] and all(
        (a[k] is None and b[k] is None)
        or (a[k] is not None and b[k] is not None and a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]))
        for k in ("input_ids", "labels", "pixel_values")
    )


def test_cached_samples_are_the_same_and_later_epochs_need_no_file_tokenizer_or_image(data, tokenizer, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    plain = _dataset(data, tokenizer)
    cached = _dataset(copy, tokenizer, cache_mb=1)
    cached.scan()  # encodes every record: the tokens are kept from here on
    first = [cached[i] for i in range(len(RECORDS))]  # reads each image once
    assert all(_same_sample(a, plain[i]) for i, a in enumerate(first))
    assert 0 < cached.cache_bytes <= cached.cache_limit == 2**20
    images = sum("image" in r for r in RECORDS)
    assert cached.cache_summary() == {
        "records": len(RECORDS),
        "images": images,
        "mib": round(cached.cache_bytes / 2**20, 1),
        "limit_mib": 1.0,
    }

    # later epochs: the records, the images and the tokenizer are no longer needed
    shutil.rmtree(copy / "images")
    (copy / "records.jsonl").write_bytes(b"x" * (copy / "records.jsonl").stat().st_size)
    cached.tokenizer = None
    again = [cached[i] for i in range(len(RECORDS))]
    assert all(_same_sample(a, b) for a, b in zip(again, first, strict=True))
    again[0]["input_ids"][0] = -1  # a sample handed out is the caller's: the kept one does not change
    assert _same_sample(cached[0], first[0])
    assert cached.mismatch_report()["ids"] == ["shapes:mismatch"]  # counted once, when it was encoded


def test_the_cache_stops_at_its_size_and_reads_the_rest_from_disk(data, tokenizer, tmp_path):
    import shutil

    from PIL import Image

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    one_image = ImageProcessor(size=IMAGE_SIZE).pixels(Image.new("RGB", (4, 4))).nbytes
    ds = _dataset(copy, tokenizer, cache_mb=(one_image + 4096) / 2**20)  # a few samples' tokens, one image
    first = [ds[i] for i in range(len(RECORDS))]
    assert ds.cache_bytes <= ds.cache_limit
    assert 0 < len(ds._encoded) < len(RECORDS) and len(ds._pixels_kept) == 1
    assert all(_same_sample(a, b) for a, b in zip((ds[i] for i in range(len(RECORDS))), first, strict=True))
    kept_image = next(iter(ds._pixels_kept))
    shutil.rmtree(copy / "images")
    assert _same_sample(ds[kept_image], first[kept_image])
    not_kept = next(i for i, r in enumerate(RECORDS) if "image" in r and i != kept_image)
    with pytest.raises(OSError, match=f"record {RECORDS[not_kept]['id']}: cannot read image"):
        ds[not_kept]
    with pytest.raises(ValueError, match="cache_mb"):
        _dataset(copy, tokenizer, cache_mb=-1)


# --- collation ----------------------------------------------------------------------------------


def test_collator_pads_and_keeps_images_of_image_samples_in_order(dataset, tokenizer):
    samples = [dataset[i] for i in (1, 0, 3, 2)]  # text, image, text, image; different lengths
    pad = tokenizer.pad_token_id
    batch = DataCollator(pad)(samples)
    assert set(batch) == {"input_ids", "labels", "attention_mask", "pixel_values"}
    lengths = [len(s["input_ids"]) for s in samples]
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (4, max(lengths))
    for row, (sample, n) in enumerate(zip(samples, lengths, strict=True)):
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (max(lengths) - n)
        assert torch.equal(batch["input_ids"][row, :n], sample["input_ids"])
        assert torch.equal(batch["labels"][row, :n], sample["labels"])
        assert (batch["input_ids"][row, n:] == pad).all() and (batch["labels"][row, n:] == IGNORE_INDEX).all()
    assert batch["pixel_values"].shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.equal(batch["pixel_values"][0], samples[1]["pixel_values"])
    assert torch.equal(batch["pixel_values"][1], samples[3]["pixel_values"])

    padded = DataCollator(pad, pad_to_multiple_of=64)(samples)
    assert padded["input_ids"].shape[1] % 64 == 0 and padded["input_ids"].shape[1] >= max(lengths)
    text_only = DataCollator(pad)([dataset[1], dataset[3]])
    assert "pixel_values" not in text_only and "id" not in text_only


def _tiny_llava(tokenizer):
    from transformers import LlavaConfig, LlavaForConditionalGeneration, Qwen2Config, SiglipVisionConfig

    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=SiglipVisionConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=8,
            vision_use_head=False,
        ),
        text_config=Qwen2Config(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=N_IMAGE,
        vision_feature_layer=-2,
        vision_feature_select_strategy="full",
    )
    return LlavaForConditionalGeneration(config).eval()


def test_collated_batches_run_through_a_tiny_llava(dataset, tokenizer):
    model = _tiny_llava(tokenizer)
    collate = DataCollator(tokenizer.pad_token_id)
    for indices in ([1, 0, 3, 2], [1, 3, 5]):  # mixed, text only
        batch = collate([dataset[i] for i in indices])
        out = model(**batch)
        assert out.loss is not None and torch.isfinite(out.loss)
        assert out.logits.shape[:2] == batch["input_ids"].shape
    out.loss.backward()


# --- sampler ------------------------------------------------------------------------------------


def _skewed(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    has_image = rng.random(n) < 0.6
    lengths = np.where(has_image, 700, 0) + rng.lognormal(3.5, 1.0, n).astype(int) + 1
    return lengths, has_image


def test_sampler_batches_are_one_modality_and_cover_every_index_once():
    lengths, has_image = _skewed()
    bs = 8
    for n_image, n_text in ((800, 400), (803, 405), (5, 3), (0, 37)):
        lens = np.concatenate([lengths[has_image][:n_image], lengths[~has_image][:n_text]])
        flags = np.array([True] * n_image + [False] * n_text)
        sampler = ModalityLengthGroupedSampler(lens, flags, bs, megabatch_factor=4, seed=1)
        order = list(sampler)
        assert len(sampler) == len(order) == n_image + n_text
        assert sorted(order) == list(range(n_image + n_text))
        batches = chunked(order, bs)
        assert [b.tolist() for b in batches] == [b.tolist() for b in sampler.batches()]
        mixed = [i for i, b in enumerate(batches) if 0 < flags[b].sum() < len(b)]
        if n_image % bs == 0 or n_text % bs == 0:
            assert mixed == []
        else:  # both groups leave a remainder: they share one batch at the very end
            assert len(mixed) == 1 and mixed[0] >= len(batches) - 2
        assert all(len(b) == bs for b in batches[:-1])


def test_sampler_is_deterministic_per_seed_and_epoch_and_longest_batch_first():
    lengths, has_image = _skewed()
    sampler = ModalityLengthGroupedSampler(lengths, has_image, 8, seed=3)
    epoch0 = list(sampler)
    assert list(ModalityLengthGroupedSampler(lengths, has_image, 8, seed=3)) == epoch0
    assert list(ModalityLengthGroupedSampler(lengths, has_image, 8, seed=4)) != epoch0
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0 and sorted(epoch1) == sorted(epoch0)
    sampler.set_epoch(0)
    assert list(sampler) == epoch0
    # the longest record leads the first batch, and batches are sorted within a megabatch
    assert lengths[epoch0[0]] == lengths.max()
    assert all((np.diff(lengths[batch]) <= 0).all() for batch in chunked(epoch0, 8))


def test_grouping_cuts_padding_waste():
    lengths, has_image = _skewed()
    bs = 8
    grouped = padding_waste(lengths, ModalityLengthGroupedSampler(lengths, has_image, bs, seed=0).batches())
    shuffled = padding_waste(lengths, chunked(np.random.default_rng(0).permutation(len(lengths)), bs))
    assert grouped < shuffled / 2, (grouped, shuffled)
    assert padding_waste([3, 1, 2, 2], [[0, 1], [2, 3]]) == pytest.approx(2 / 10)
    assert padding_waste([], []) == 0.0


# --- reports ------------------------------------------------------------------------------------


def test_mismatch_is_kept_counted_and_logged_once(dataset, tokenizer, caplog):
    assert len(tokenizer("\n\n", add_special_tokens=False)["input_ids"]) == 1  # the merge exists
    index = len(RECORDS) - 1
    with caplog.at_level(logging.WARNING, logger="impkit.train.dataset"):
        sample = dataset[index]
        dataset[index]
        for i in range(index):
            dataset[i]
    assert _supervised_text(tokenizer, sample["labels"]) == "\n\nThe square is red.<|im_end|>"
    warnings = [r.getMessage() for r in caplog.records if "mismatch" in r.getMessage()]
    assert len(warnings) == 1 and "shapes:mismatch" in warnings[0]
    assert dataset.mismatch_report() == {"count": 1, "ids": ["shapes:mismatch"], "truncated": {"count": 0, "ids": []}}


def test_scan_reports_mismatches_and_truncations_before_training(data, tokenizer, caplog):
    full = _dataset(data, tokenizer)
    image_max = max(len(full[i]["input_ids"]) for i, r in enumerate(RECORDS) if "image" in r)
    longer = [i for i in range(len(RECORDS)) if len(full[i]["input_ids"]) > image_max]
    assert longer  # some text-only record is longer than every image record

    ds = _dataset(data, tokenizer, max_length=image_max)
    with caplog.at_level(logging.WARNING, logger="impkit.train.dataset"):
        report = ds.scan()
    assert report["count"] == 1 and report["ids"] == ["shapes:mismatch"]
    assert report["truncated"] == {"count": len(longer), "ids": [RECORDS[i]["id"] for i in longer]}
    assert any("records have a tokenization mismatch" in r.getMessage() for r in caplog.records)
    sample = ds[longer[0]]
    assert len(sample["input_ids"]) == len(sample["labels"]) == image_max

    assert _dataset(data, tokenizer).scan(limit=2)["count"] == 0  # the mismatch is the last record
    with pytest.raises(TemplateError, match="record shapes:0: .*cut into the image tokens"):
        _dataset(data, tokenizer, max_length=5).scan()


def test_mismatch_from_encode_is_counted(dataset, monkeypatch):
    import dataclasses

    import impkit.train.dataset as module

    real = module.encode
    monkeypatch.setattr(module, "encode", lambda *a, **k: dataclasses.replace(real(*a, **k), mismatch=True))
    for i in range(3):
        assert dataset[i]["input_ids"].numel() > 0
    assert dataset.mismatch_report()["ids"] == [r["id"] for r in RECORDS[:3]]


# --- shared prefix (impkit.model.shared_prefix) --------------------------------------------------


def _lora_llava(tokenizer):
    from impkit.config import LoraTraining
    from impkit.train.parts import prepare_stage2

    return prepare_stage2(_tiny_llava(tokenizer), "qwen2", LoraTraining(enabled=True, r=4, alpha=8, dropout=0.0))


def _loss_and_grads(model, inputs):
    model.zero_grad(set_to_none=True)
    loss = model(**inputs).loss
    loss.backward()
    # the projector gets no gradient from a text-only batch
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("indices", [[0, 2, 4], [1, 3, 5], [1, 0, 3, 2]], ids=["images", "text", "mixed"])
def test_a_shared_prefix_gives_the_whole_batchs_loss_and_gradients(dataset, tokenizer, indices):
    from impkit.model.shared_prefix import with_shared_prefix

    model = _lora_llava(tokenizer)
    batch = DataCollator(tokenizer.pad_token_id)([dataset[i] for i in indices])
    split = with_shared_prefix(model, batch, model.config.image_token_id)
    rows = batch["input_ids"].tolist()
    image_id = model.config.image_token_id
    common = next(n for n in range(len(rows[0])) if len({row[n] for row in rows}) > 1 or rows[0][n] == image_id)
    shared = batch["input_ids"].shape[1] - split["input_ids"].shape[1]
    assert shared == common  # every row's ChatML system turn and user-turn opening, up to an image
    template = get_template("qwen2")
    assert tokenizer.decode(rows[0][:shared]).startswith(template.system_block() + template.user_prefix)
    assert split["past_key_values"].get_seq_length() == shared
    full_loss, full_grads = _loss_and_grads(model, batch)
    split_loss, split_grads = _loss_and_grads(model, split)
    torch.testing.assert_close(split_loss, full_loss, rtol=1e-5, atol=1e-6)
    assert full_grads.keys() == split_grads.keys() and any("lora" in n for n in full_grads)
    for name, grad in full_grads.items():
        torch.testing.assert_close(split_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_the_shared_prefix_stops_at_images_supervision_and_each_rows_last_token():
    from impkit.model.shared_prefix import training_prefix_length

    def batch(rows, first_supervised, lengths=None):
        ids = torch.tensor(rows)
        labels = torch.full_like(ids, IGNORE_INDEX)
        for r, f in enumerate(first_supervised):
            labels[r, f:] = ids[r, f:]
        lengths = lengths or [len(r) for r in rows]
        mask = torch.tensor([[1] * n + [0] * (len(rows[0]) - n) for n in lengths])
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    rows = [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 9, 9, 9, 9]]
    assert training_prefix_length(batch(rows, [6, 6]), image_token_id=99) == 4  # where the rows differ
    assert training_prefix_length(batch(rows, [3, 6]), image_token_id=99) == 2  # token 3 is supervised
    assert training_prefix_length(batch(rows, [6, 6], lengths=[8, 3]), image_token_id=99) == 2  # a short row keeps one
    assert training_prefix_length(batch([[1, 2, 99, 4, 5, 6], [1, 2, 99, 4, 5, 7]], [5, 5]), image_token_id=99) == 2
    assert training_prefix_length(batch(rows[:1], [6]), image_token_id=99) == 0  # a lone row shares nothing


def test_the_trainer_with_a_shared_prefix_logs_the_same_losses(dataset, tokenizer, tmp_path):
    from sections import section_with

    from impkit.config import StageTraining
    from impkit.train.trainer import fit_stage

    def losses(share_prefix: bool) -> list[float]:
        cfg = section_with(
            StageTraining,
            "train.recipes.nano.stage1",
            learning_rate=1e-2,
            projector_lr=None,
            lr_scheduler="constant",
            warmup_ratio=0.0,
            weight_decay=0.0,
            global_batch_size=3,
            per_device_batch_size=3,
            epochs=2,
            max_length=512,
            checkpoint_steps=100,
            gradient_checkpointing=False,
            precision="fp32",
            logging_steps=1,
            share_prefix=share_prefix,
        )
        result = fit_stage(
            _lora_llava(tokenizer),
            torch.utils.data.Subset(dataset, [0, 1, 2, 3, 4, 5]),
            DataCollator(tokenizer.pad_token_id),
            cfg,
            checkpoint_dir=tmp_path / str(share_prefix),
            fingerprint={"share_prefix": share_prefix},
            seed=0,
            label="test",
        )
        return [entry["loss"] for entry in result.log_history if "loss" in entry]

    plain, shared = losses(False), losses(True)
    assert len(plain) == 4 and plain[-1] < plain[0]  # it trained
    assert shared == pytest.approx(plain, rel=1e-4)


def test_a_shared_prefix_with_gradient_checkpointing_is_a_config_error():
    from sections import section_with

    from impkit.config import ConfigError, StageTraining

    with pytest.raises(ConfigError, match="share_prefix"):
        section_with(
            StageTraining,
            "train.recipes.nano.stage1",
            learning_rate=1e-3,
            projector_lr=None,
            lr_scheduler="cosine",
            warmup_ratio=0.0,
            weight_decay=0.0,
            global_batch_size=2,
            per_device_batch_size=2,
            epochs=1,
            max_length=64,
            checkpoint_steps=10,
            gradient_checkpointing=True,
            precision="fp32",
            logging_steps=1,
            share_prefix=True,
        )


def test_a_shared_prefix_trains_the_same_under_two_process_data_parallel(data, tmp_path):
    """DDP wraps the model; the trainer then calls it twice per step (the prefix, then the rows)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent / "shared_prefix_ddp.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "IMPKIT_PROGRESS": "0"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29519",
        str(script),
        str(data),
        str(tmp_path),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    losses = json.loads((tmp_path / "losses.json").read_text())
    assert losses["world_size"] == 2 and len(losses["False"]) == 4
    assert losses["True"] == pytest.approx(losses["False"], rel=1e-4)
