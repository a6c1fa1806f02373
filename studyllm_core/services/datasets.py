"""Datasets: named sources of texts (a file, the bundled demo corpus, or a prompt run's responses).

A dataset is a `dataset` group whose metadata says where its texts come from, so every process
(the CLI, a Dagster sensor, a run worker) resolves a name to the same texts. Loading applies
the same checks as the embedding service, so unusable rows are dropped and counted here, before
any API call, instead of failing later.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, text

from studyllm_core.db.engine import translate_db_errors
from studyllm_core.db.groups import GroupRepository
from studyllm_core.errors import InputError, NotFoundError
from studyllm_core.services.capture.cache_key import unusable_rows
from studyllm_core.services.inputs import CONFIG_OPTIONS, read_texts

DEMO = "demo"
KINDS = ("file", "demo", "prompt_run")
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset's texts come from."""

    name: str
    kind: str = "file"
    path: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    header: bool = True
    prompt_group_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def labels_from(self) -> str | None:
        """The column reference labels are read from: the named one of a file, `label` of the demo, none of replies."""
        return {"file": self.label_column, "demo": "label"}.get(self.kind)


@dataclass
class DatasetTexts:
    """The usable texts of a dataset (rows that would fail to embed are dropped and counted)."""

    texts: list[str]
    labels: list[str] | None
    source_rows: list[int]  # row of each kept text in the source
    dropped: dict[int, str]  # source row -> why it was dropped


def dataset_name(raw: str) -> str:
    """A name usable as a Dagster partition key and a folder: letters, digits, `_`, `.`, `-`."""
    name = _NAME.sub("-", raw).strip("-.")
    if not name:
        raise InputError(f"{raw!r} gives an empty dataset name; use letters, digits, '_', '.' or '-'")
    return name[:120]


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def demo_corpus_path() -> Path:
    """The bundled labelled demo corpus (TSV: label, text)."""
    return Path(str(resources.files("studyllm_core") / "data" / "demo_corpus.tsv"))


class DatasetRegistry:
    """Register dataset sources by name and load their texts."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.groups = GroupRepository(engine)

    def register(self, source: DatasetSource) -> int:
        """Create or update the dataset group of `source` (the name is validated first)."""
        if source.kind not in KINDS:
            raise InputError(f"dataset kind must be one of {', '.join(KINDS)}, not {source.kind!r}")
        if dataset_name(source.name) != source.name:
            raise InputError(f"dataset name {source.name!r} is not valid; use {dataset_name(source.name)!r}")
        if source.kind == "file" and not (source.path and Path(source.path).is_file()):
            raise InputError(f"dataset {source.name!r}: file {source.path} does not exist")
        return self.groups.ensure_group("dataset", source.name, metadata={"source": source.to_dict()})

    def file_dataset_name(self, path: Path) -> str:
        """The dataset name of a file dropped in the watched folder: its stem made a valid name (`My Survey`
        -> `My-Survey`), plus a hash of the file name when another source holds that name already, so
        distinct files get distinct names (`a b.csv` and `a-b.csv`, `a.csv` and `a.tsv`).
        InputError when no letter or digit is left to name it by."""
        name = dataset_name(path.stem)
        if not self._held_by_another(name, path):
            return name
        return dataset_name(f"{name[:110]}-{_short_hash(path.name)}")

    def _held_by_another(self, name: str, path: Path) -> bool:
        group = self.groups.lookup("dataset", name)
        source = (group.metadata_json or {}).get("source") if group is not None else None
        if not source:
            return False
        return source.get("kind") != "file" or Path(source.get("path") or "").resolve() != path.resolve()

    def kind_of(self, name: str) -> str | None:
        """The kind of the registered dataset `name` (file, demo, prompt_run), None when none is registered."""
        group = self.groups.lookup("dataset", name)
        source = (group.metadata_json or {}).get("source") if group is not None else None
        return source.get("kind") if source else None

    def register_demo(self) -> int:
        return self.register(DatasetSource(name=DEMO, kind="demo", label_column="label"))

    def get(self, name: str) -> DatasetSource:
        """The registered source of dataset `name`; NotFoundError names the fix."""
        group = self.groups.lookup("dataset", name)
        if group is None or not (group.metadata_json or {}).get("source"):
            raise NotFoundError(
                f"dataset {name!r} is not registered: drop its file in the watched folder, "
                "or give its path in the run config (source_path)"
            )
        return DatasetSource(**group.metadata_json["source"])

    def load(self, source: DatasetSource) -> DatasetTexts:
        """Read the texts of `source` and drop the rows no embedding could be made of."""
        if source.kind == "prompt_run":
            texts, labels = self._prompt_run_texts(source.prompt_group_id)
        else:
            path = demo_corpus_path() if source.kind == "demo" else Path(source.path or "")
            label_column = source.labels_from
            # Datasets are set up in the Dagster UI's run config (or by the sensor): say so in errors.
            table = read_texts(
                path, text_column=source.text_column, label_column=label_column, header=source.header,
                options=CONFIG_OPTIONS,
            )
            texts, labels = table.texts, table.labels
        dropped = unusable_rows(texts)  # a clean file: no check per text
        rows = [row for row in range(len(texts)) if row not in dropped]
        kept = [texts[row] for row in rows]
        kept_labels = [labels[row] for row in rows] if labels is not None else []
        if not kept:
            raise InputError(
                f"dataset {source.name!r} has no usable texts ({len(texts)} rows, all empty or unreadable); "
                "check the file and its text column"
            )
        if self.groups.lookup("dataset", source.name) is not None:  # remembered for K checks before a sweep
            self.groups.ensure_group("dataset", source.name, metadata={"usable_texts": len(kept)})
        return DatasetTexts(kept, kept_labels if labels is not None else None, rows, dropped)

    def usable_texts(self, name: str) -> int | None:
        """How many usable texts dataset `name` had when last loaded (None: never loaded, or not registered)."""
        group = self.groups.lookup("dataset", name)
        count = (group.metadata_json or {}).get("usable_texts") if group else None
        return int(count) if count is not None else None

    def _prompt_run_texts(self, group_id: int | None) -> tuple[list[str], None]:
        """The successful responses of a prompt run, in call order."""
        return [t or "" for t in self._replies(group_id)["text"]], None

    def replies(self, name: str) -> pd.DataFrame:
        """The replies of dataset `name` with where each came from: `row` (the dataset row, as in its snapshot),
        raw_call_id, provider, model, prompt, text. InputError when the dataset is not made of replies."""
        source = self.get(name)
        if source.kind != "prompt_run":
            raise InputError(f"dataset {name!r} is a {source.kind} dataset, not the replies of a prompt run: it has no "
                             "provider, model or prompt to compare (run prompts with prompt_run to make one)")
        return self._replies(source.prompt_group_id)

    def _replies(self, group_id: int | None) -> pd.DataFrame:
        """One query: a prompt run's successful calls in call order (the order its dataset's rows follow)."""
        if group_id is None:
            raise InputError("a prompt_run dataset needs prompt_group_id")
        sql = text(
            "SELECT (row_number() OVER (ORDER BY r.id) - 1)::int AS row, r.id AS raw_call_id, r.provider, r.model, "
            "coalesce(r.request_json->>'original_prompt', r.request_json->>'prompt') AS prompt, "
            "r.response_json->>'text' AS text "
            "FROM group_members m JOIN raw_calls r ON r.id = m.call_id "
            "WHERE m.group_id = :g AND r.status = 'success' ORDER BY r.id"
        )
        with translate_db_errors("reading a prompt run"), self.engine.connect() as conn:
            rows = conn.execute(sql, {"g": group_id}).all()
        return pd.DataFrame(rows, columns=["row", "raw_call_id", "provider", "model", "prompt", "text"])
