"""Offline MMLU loader for the speclm retention tasks (used by lm-eval as ``custom_dataset``).

Why a loader instead of ``dataset_path: cais/mmlu``: the evaluation must run without network.
The original MMLU release (Hendrycks et al., MIT licence) ships one header-less CSV per subject
and split: ``<root>/{dev,test,val}/<subject>_<split>.csv`` with columns question, A, B, C, D,
answer-letter. This module turns such a file into the same fields as the hub dataset
``cais/mmlu`` (question, subject, choices, answer as 0-3), so the prompt template is lm-eval's
own MMLU template, unchanged.

Where the CSVs are is decided at run time: lm-eval passes the task metadata to this function,
and speclm puts ``mmlu_dir`` there (``TaskManager(metadata={"mmlu_dir": ...})``); the
``lm_eval`` CLI can do the same with ``--metadata '{"mmlu_dir": "/path/to/mmlu"}'``; else the
environment variable ``SPECLM_MMLU_DIR`` is used.

This file is imported by lm-eval from its path (``!function utils.load_mmlu_csv``), so it must
stay self-contained: standard library and ``datasets`` only, no speclm imports.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

SPLITS = ("dev", "val", "test")  # dev = the 5 few-shot examples per subject
LETTERS = "ABCD"


def find_split_dir(root: str | os.PathLike) -> Path:
    """The folder holding dev/ test/ val/ (accepts the release root or its ``data/`` folder)."""
    root = Path(root).expanduser()
    for cand in (root, root / "data"):
        if (cand / "test").is_dir() and (cand / "dev").is_dir():
            return cand
    raise FileNotFoundError(
        f"{root}: no MMLU CSV folders (expected {root}/data/test/<subject>_test.csv or {root}/test/...)")


def read_subject(root: str | os.PathLike, subject: str, split: str) -> list[dict]:
    """Rows of one subject/split as cais/mmlu-style dicts."""
    path = find_split_dir(root) / split / f"{subject}_{split}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such MMLU file (subject {subject!r}, split {split!r})")
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for i, rec in enumerate(csv.reader(fh)):
            if len(rec) != 6 or rec[5].strip() not in LETTERS:
                raise ValueError(f"{path}:{i + 1}: expected question,A,B,C,D,answer-letter; got {len(rec)} fields")
            rows.append({"question": rec[0], "subject": subject, "choices": rec[1:5],
                         "answer": LETTERS.index(rec[5].strip())})
    return rows


def load_mmlu_csv(mmlu_dir: str | None = None, subject: str | None = None, **_ignored):
    """``custom_dataset`` hook: a DatasetDict with dev/val/test splits of one MMLU subject.

    lm-eval calls this as ``custom_dataset(**metadata, **dataset_kwargs)``; the task YAML gives
    ``dataset_kwargs: {subject: ...}`` and the runner gives ``metadata: {mmlu_dir: ...}``.
    """
    import datasets

    mmlu_dir = mmlu_dir or os.environ.get("SPECLM_MMLU_DIR")
    if not mmlu_dir:
        raise FileNotFoundError(
            "speclm MMLU tasks need the offline MMLU CSVs: pass metadata mmlu_dir=... "
            "(speclm eval retention --mmlu DIR) or set SPECLM_MMLU_DIR")
    if not subject:
        raise ValueError("task YAML must set dataset_kwargs.subject")
    return datasets.DatasetDict({s: datasets.Dataset.from_list(read_subject(mmlu_dir, subject, s))
                                 for s in SPLITS})
