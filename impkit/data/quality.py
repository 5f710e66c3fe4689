"""The data-quality gate: Great Expectations suites over the assembled records and the mixture.

Two suites, both written to a file-backed GX context so their Data Docs are real HTML:
- ``records``: one row per record (facts from ``record_features`` and the image checker); every
  failing row is quarantined with the names of the checks it failed. Run per chunk of records, so
  memory stays bounded however large the mixture is.
- ``mixture``: one row per source of a mixture; the stage fails when a source's kept share drifts
  from the plan or too many records were quarantined.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from impkit.config import QualityConfig
from impkit.data.record_features import record_features
from impkit.errors import ImpkitError

log = logging.getLogger(__name__)

# Columns of the record table, in order (missing facts become nulls, which GX's column-map
# expectations skip: a record that is not even a dict fails only ``record_is_object``).
RECORD_COLUMNS = [
    "record_type",
    "id_type",
    "id",
    "id_repeat",
    "image_type",
    "has_image",
    "conversations_type",
    "n_turns",
    "bad_turns",
    "first_role",
    "last_role",
    "role_repeats",
    "image_tags_total",
    "image_tags_first_turn",
    "image_tags_wanted",
    "prompt_chars_max",
    "answer_chars_min",
    "answer_chars_max",
    "image_status",
    "image_min_side",
]


# Typed columns (categories, nullable integers) make GX's pandas checks about twice as fast as the
# object columns pandas infers from dicts with missing values.
RECORD_DTYPES = {
    **{
        c: "category"
        for c in (
            "record_type",
            "id_type",
            "image_type",
            "conversations_type",
            "first_role",
            "last_role",
            "image_status",
        )
    },
    **{
        c: "Int64"
        for c in (
            "n_turns",
            "bad_turns",
            "role_repeats",
            "image_tags_total",
            "image_tags_first_turn",
            "image_tags_wanted",
            "prompt_chars_max",
            "answer_chars_min",
            "answer_chars_max",
            "image_min_side",
        )
    },
    "id": "string",
    "id_repeat": "boolean",
    "has_image": "boolean",
}


class QualityGateError(ImpkitError, RuntimeError):
    """The assembled data failed a gate that stops the stage."""


def _record_expectations(q: QualityConfig) -> list[tuple[str, str, dict[str, Any]]]:
    """(check name, GX expectation class, kwargs). The check name is the quarantine reason."""
    return [
        ("record_is_object", "ExpectColumnValuesToBeInSet", {"column": "record_type", "value_set": ["dict"]}),
        # LLaVA's loader never reads the id; JSON integers are ids as good as strings (compared as text)
        ("id_is_string_or_integer", "ExpectColumnValuesToBeInSet", {"column": "id_type", "value_set": ["str", "int"]}),
        ("id_not_empty", "ExpectColumnValueLengthsToBeBetween", {"column": "id", "min_value": 1}),
        ("id_unique", "ExpectColumnValuesToBeInSet", {"column": "id_repeat", "value_set": [False]}),
        ("image_is_path", "ExpectColumnValuesToBeInSet", {"column": "image_type", "value_set": ["str", "missing"]}),
        (
            "conversations_is_list",
            "ExpectColumnValuesToBeInSet",
            {"column": "conversations_type", "value_set": ["list"]},
        ),
        ("turns_well_formed", "ExpectColumnValuesToBeBetween", {"column": "bad_turns", "min_value": 0, "max_value": 0}),
        ("has_exchange", "ExpectColumnValuesToBeBetween", {"column": "n_turns", "min_value": 2}),
        ("first_turn_human", "ExpectColumnValuesToBeInSet", {"column": "first_role", "value_set": ["human"]}),
        (
            "roles_alternate",
            "ExpectColumnValuesToBeBetween",
            {"column": "role_repeats", "min_value": 0, "max_value": 0},
        ),
        ("ends_with_answer", "ExpectColumnValuesToBeInSet", {"column": "last_role", "value_set": ["gpt"]}),
        # "Exactly one <image> tag, in the first human turn, iff the record has an image", as two
        # checks that fail independently: the count over all turns equals has_image (1 or 0), and
        # every tag there is sits in the first turn.
        (
            "image_tag_count",
            "ExpectColumnPairValuesToBeEqual",
            {"column_A": "image_tags_total", "column_B": "image_tags_wanted"},
        ),
        (
            "image_tag_in_first_turn",
            "ExpectColumnPairValuesToBeEqual",
            {"column_A": "image_tags_first_turn", "column_B": "image_tags_total"},
        ),
        ("image_readable", "ExpectColumnValuesToBeInSet", {"column": "image_status", "value_set": ["ok", "none"]}),
        (
            "image_min_size",
            "ExpectColumnValuesToBeBetween",
            {"column": "image_min_side", "min_value": q.min_image_side},
        ),
        (
            "prompt_length",
            "ExpectColumnValuesToBeBetween",
            {"column": "prompt_chars_max", "min_value": 1, "max_value": q.max_prompt_chars},
        ),
        ("answer_length", "ExpectColumnValuesToBeBetween", {"column": "answer_chars_min", "min_value": 1}),
        (
            "answer_max_length",
            "ExpectColumnValuesToBeBetween",
            {"column": "answer_chars_max", "max_value": q.max_answer_chars},
        ),
    ]


def _mixture_expectations(q: QualityConfig) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (
            "quarantine_share",
            "ExpectColumnValuesToBeBetween",
            {"column": "quarantined_share", "min_value": 0.0, "max_value": q.max_quarantine_share},
        ),
        (
            "source_share",
            "ExpectColumnValuesToBeBetween",
            {"column": "share_drift", "min_value": -q.share_tolerance, "max_value": q.share_tolerance},
        ),
    ]


@dataclass
class ChunkVerdict:
    reasons: dict[int, list[str]]  # row index -> names of the failed checks
    evaluated: int


class QualityGate:
    """A file-backed GX context living in a temporary folder until ``publish`` moves its Data Docs."""

    def __init__(self, quality: QualityConfig, name: str):
        import great_expectations as gx  # slow import: only when a gate actually runs

        self._gx = gx
        self.quality = quality
        self._root = Path(tempfile.mkdtemp(prefix="impkit-gx-"))
        self.context = gx.get_context(mode="file", project_root_dir=str(self._root))
        # GX draws a bar per validation; the stage shows its own progress over all chunks instead.
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._source = self.context.data_sources.add_or_update_pandas(name=name)
        self._checkpoints: dict[str, Any] = {}

    def _checkpoint(self, table: str, expectations: list[tuple[str, str, dict[str, Any]]]):
        if table in self._checkpoints:
            return self._checkpoints[table]
        gx = self._gx
        import great_expectations.expectations as gxe

        asset = self._source.add_dataframe_asset(name=table)
        batch = asset.add_batch_definition_whole_dataframe(f"{table}-batch")
        suite = gx.ExpectationSuite(name=f"{self._source.name}-{table}")
        for check, cls_name, kwargs in expectations:
            suite.add_expectation(getattr(gxe, cls_name)(**kwargs, meta={"check": check}))
        suite = self.context.suites.add(suite)
        vd = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{table}-validation", data=batch, suite=suite)
        )
        cp = self.context.checkpoints.add(
            gx.Checkpoint(
                name=f"{self._source.name}-{table}",
                validation_definitions=[vd],
                actions=[],  # Data Docs are built once in ``publish``, not after every chunk
                result_format={"result_format": "COMPLETE", "partial_unexpected_count": 20},
            )
        )
        self._checkpoints[table] = cp
        return cp

    def _run(self, table: str, expectations, df: pd.DataFrame) -> dict[str, list[Any]]:
        """Validate ``df``; return check name -> failing row indexes."""
        result = self._checkpoint(table, expectations).run(batch_parameters={"dataframe": df})
        failures: dict[str, list[Any]] = {}
        for vr in result.run_results.values():
            for er in vr.results:
                if er.exception_info and er.exception_info.get("raised_exception"):
                    raise QualityGateError(
                        f"expectation {er.expectation_config.meta['check']} could not run: "
                        f"{er.exception_info.get('exception_message')}"
                    )
                if not er.success:
                    idx = er.result.get("unexpected_index_list") or []
                    failures[er.expectation_config.meta["check"]] = [
                        i["index"] if isinstance(i, dict) else i for i in idx
                    ]
        return failures

    def check_records(self, items: list[tuple[Any, dict[str, Any]]]) -> ChunkVerdict:
        """Judge (record, facts known to the caller: id_repeat and the image checks) pairs."""
        rows = []
        for record, known in items:
            row = record_features(record)
            row.update(known)
            rows.append(row)
        df = pd.DataFrame.from_records(rows, columns=RECORD_COLUMNS).astype(RECORD_DTYPES)
        failures = self._run("records", _record_expectations(self.quality), df)
        reasons: dict[int, list[str]] = {}
        for check, indexes in failures.items():
            for i in indexes:
                reasons.setdefault(int(i), []).append(check)
        return ChunkVerdict(reasons=reasons, evaluated=len(df))

    def check_mixture(self, rows: list[dict[str, Any]]) -> dict[str, list[str]]:
        """Return check name -> failing source names (empty when the gate passes)."""
        df = pd.DataFrame.from_records(rows)
        failures = self._run("mixture", _mixture_expectations(self.quality), df)
        return {check: [df.loc[i, "source"] for i in idx] for check, idx in failures.items()}

    def publish(self, docs_dir: str | Path) -> Path:
        """Move the built Data Docs site to ``docs_dir`` (replacing it) and drop the temp context."""
        self.context.build_data_docs()
        site = self._root / "gx" / "uncommitted" / "data_docs" / "local_site"
        docs_dir = Path(docs_dir)
        if docs_dir.exists():
            shutil.rmtree(docs_dir)
        docs_dir.parent.mkdir(parents=True, exist_ok=True)
        if site.exists():
            shutil.copytree(site, docs_dir)
        return docs_dir / "index.html"

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)


# ---------------------------------------------------------------------------- the gate in a process
# Describing and validating a chunk takes about as long as reading it. Running the gate in its own
# process lets chunk k be validated while chunk k+1 is read, so both cores work.
_WORKER_GATE: QualityGate | None = None


def _worker_init(quality: QualityConfig, name: str) -> None:
    global _WORKER_GATE
    from impkit.progress import setup_logging

    setup_logging()
    _WORKER_GATE = QualityGate(quality, name)


def _worker_check_pickled(payload: bytes) -> ChunkVerdict:
    return _worker_call("check_records", pickle.loads(payload))


def _worker_call(method: str, *args: Any) -> Any:
    assert _WORKER_GATE is not None
    return getattr(_WORKER_GATE, method)(*args)


class InlineGate:
    """The same interface as ``GateProcess``, validating in this process (for ``workers: 1``)."""

    def __init__(self, quality: QualityConfig, name: str):
        self._gate = QualityGate(quality, name)

    def submit_records(self, items: list[tuple[Any, dict[str, Any]]]):
        from concurrent.futures import Future

        future: Future = Future()
        future.set_result(self._gate.check_records(items))
        return future

    def check_mixture(self, rows: list[dict[str, Any]]) -> dict[str, list[str]]:
        return self._gate.check_mixture(rows)

    def publish(self, docs_dir: str | Path) -> Path:
        return self._gate.publish(docs_dir)

    def close(self) -> None:
        self._gate.close()


def open_gate(quality: QualityConfig, name: str, workers: int) -> InlineGate | GateProcess:
    """With a spare core, validate in a second process; otherwise inline."""
    return GateProcess(quality, name) if workers > 1 else InlineGate(quality, name)


class GateProcess:
    """``QualityGate`` behind a one-process pool: ``submit_records`` returns a future."""

    def __init__(self, quality: QualityConfig, name: str):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the parent may hold threads (progress bars) and open pools.
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(quality, name),
        )
        self._pool.submit(int)  # start the process (and its GX import) while the caller plans

    def submit_records(self, items: list[tuple[Any, dict[str, Any]]]):
        # Pickle here, in the calling thread: left to the pool's feeder thread, pickling 50K records
        # fights the reading loop for the GIL and slows both.
        return self._pool.submit(_worker_check_pickled, pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL))

    def check_mixture(self, rows: list[dict[str, Any]]) -> dict[str, list[str]]:
        return self._pool.submit(_worker_call, "check_mixture", rows).result()

    def publish(self, docs_dir: str | Path) -> Path:
        return self._pool.submit(_worker_call, "publish", str(docs_dir)).result()

    def close(self) -> None:
        try:
            self._pool.submit(_worker_call, "close").result()
        except Exception:  # the worker may already be gone after a failure; nothing left to clean
            log.debug("gate worker was gone at close", exc_info=True)
        self._pool.shutdown(cancel_futures=True)
