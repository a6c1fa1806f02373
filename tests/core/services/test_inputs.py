"""`column_names` reads a file's header only, and names the same columns `read_texts` reads."""

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from studyllm_core.errors import InputError
from studyllm_core.services.inputs import column_names, read_texts


@pytest.fixture
def files(tmp_path):
    (tmp_path / "a.csv").write_text('\n"text",label\n"x, with a comma",1\n')
    (tmp_path / "b.tsv").write_text("label\ttext\r\n1\tx\r\n")
    (tmp_path / "c.jsonl").write_text('\n{"text": "x", "label": "a"}\n')
    pq.write_table(pa.table({"text": ["x"], "label": ["y"]}), tmp_path / "d.parquet")
    (tmp_path / "e.txt").write_text("one text per line\n")
    return tmp_path


@pytest.mark.parametrize("name", ["a.csv", "b.tsv", "c.jsonl", "d.parquet"])
def test_header_names_match_what_read_texts_reads(files, name):
    names = column_names(files / name)
    assert sorted(names) == ["label", "text"]
    table = read_texts(files / name, label_column="label")
    assert table.texts == ["x, with a comma" if name == "a.csv" else "x"] and table.labels is not None


def test_a_txt_file_has_no_columns_and_a_broken_header_is_an_input_error(files):
    assert column_names(files / "e.txt") == []
    (files / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(InputError, match="cannot read the columns of bad.jsonl"):
        column_names(files / "bad.jsonl")


TRICKY = [
    "plain", "  leading and trailing spaces  ", 'a "quoted" word', "comma, inside", "multi\nline\ntext",
    "unicode: é ü 漢字 🙂", "", "trailing backslash \\", "'single quotes'", "semi;colon", "tab\tinside",
]


def _rows(n: int, *, tabs: bool = True, newlines: bool = True) -> list[str]:
    rows = []
    for i in range(n):
        text = f"{i}: {TRICKY[i % len(TRICKY)]}"
        if not tabs:
            text = text.replace("\t", " ")
        if not newlines:
            text = text.replace("\n", " ")
        rows.append(text)
    return rows


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet", "txt"])
def test_every_format_yields_exactly_its_rows(tmp_path, fmt):
    import csv as csv_module

    flat = fmt in ("tsv", "txt")  # no quoting: a text holds neither tabs nor line breaks there
    texts = _rows(1000, tabs=not flat, newlines=not flat)
    labels = [f"label {i % 7}" for i in range(1000)]
    path = tmp_path / f"rows.{fmt}"
    if fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv_module.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(zip(texts, labels))
    elif fmt == "tsv":
        path.write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in zip(texts, labels)), encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in zip(texts, labels)))
    elif fmt == "parquet":
        pq.write_table(pa.table({"text": texts, "label": labels}), path)
    else:
        path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    table = read_texts(path, label_column=None if fmt == "txt" else "label")
    assert table.texts == texts
    if fmt != "txt":
        assert table.labels == labels


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "txt"])
def test_a_byte_order_mark_is_dropped(tmp_path, fmt):
    body = {"csv": "text,label\nx,1\n", "tsv": "text\tlabel\nx\t1\n", "jsonl": '{"text": "x", "label": 1}\n',
            "txt": "x\n"}[fmt]
    path = tmp_path / f"bom.{fmt}"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert read_texts(path).texts == ["x"]
    if fmt != "txt":
        assert column_names(path)[0] == "text"
        assert read_texts(path, label_column="label").labels == ["1"]


def test_numbers_and_booleans_are_read_as_text_nested_values_are_refused(tmp_path):
    path = tmp_path / "n.jsonl"
    path.write_text('{"text": 5, "label": true}\n{"text": 2.5, "label": null}\n')
    table = read_texts(path, label_column="label")
    assert table.texts == ["5", "2.5"] and table.labels == ["true", ""]
    path.write_text('{"text": "fine"}\n\n{"text": ["a", "list"]}\n')
    with pytest.raises(InputError, match=r"n.jsonl line 3: the text column 'text' holds a JSON array, not text"):
        read_texts(path)


@pytest.mark.parametrize("column, kind", [
    (pa.array([["a"], ["b"]]), "list<"),
    (pa.array([{"inner": "x"}, {"inner": "y"}]), "struct<inner: string>"),
    (pa.array([b"\xff\xfe", b"ok"]), "binary"),
])
def test_parquet_columns_that_are_not_text_are_refused(tmp_path, column, kind):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": column}), path)
    with pytest.raises(InputError, match=rf"the text column .text. is of Parquet type {re.escape(kind)}.*, not text"):
        read_texts(path)


def test_headerless_hint_names_the_option_of_the_caller(tmp_path):
    from studyllm_core.services.inputs import CONFIG_OPTIONS

    path = tmp_path / "h.tsv"
    path.write_text("sports\tThe match ended two to one after extra time.\nscience\tA new comet was seen.\n")
    with pytest.raises(InputError, match=r"first row reads like data.*use --no-header and name the text column by "
                                         r"position \(--text-column 1\)"):
        read_texts(path)
    with pytest.raises(InputError, match=r"use no_header: true and name the text column by position \(text_column: 1\)"):
        read_texts(path, options=CONFIG_OPTIONS)
    assert read_texts(path, header=False, text_column="1").texts[1] == "A new comet was seen."


def test_a_dataset_set_up_in_the_ui_gets_the_run_config_wording(engine, tmp_path):
    """Datasets are configured in dataset_snapshot's run config, where the option is `no_header`, not --no-header."""
    from studyllm_core.services.datasets import DatasetRegistry, DatasetSource

    path = tmp_path / "h.tsv"
    path.write_text("sports\tThe match ended two to one after extra time.\nscience\tA new comet was seen.\n")
    registry = DatasetRegistry(engine)
    with pytest.raises(InputError, match=r"use no_header: true and name the text column by position") as info:
        registry.load(DatasetSource(name="h", path=str(path)))
    assert "--" not in str(info.value)
    data = registry.load(DatasetSource(name="h", path=str(path), header=False, text_column="1"))
    assert data.texts == ["The match ended two to one after extra time.", "A new comet was seen."]


def test_rows_swallowed_by_a_late_closing_quote_are_refused_real_multiline_texts_pass(tmp_path):
    rows = ["text,label"] + [f"row {i},L{i % 3}" for i in range(50)]
    rows[10], rows[30] = '"opens here,L1', 'closes",L2'
    (tmp_path / "late.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"late.csv line 11: a quoted text runs over 21 lines that each look like a row of 2 cells"):
        read_texts(tmp_path / "late.csv", text_column="text")
    # A reply with line breaks (even with a comma per line) and a two-line text are texts, not rows.
    reply = '"Three fruits:\n1. apples\n2. pears, ripe\n3. plums\nThat is all."'
    two_lines = '"first line, and\nsecond line"'
    (tmp_path / "ok.csv").write_text(f"text,label\n{reply},a\n{two_lines},b\nplain,c\n")
    assert len(read_texts(tmp_path / "ok.csv", text_column="text").texts) == 3


def test_a_dataset_keeps_the_same_rows_whether_its_texts_are_clean_or_not(engine, tmp_path):
    """A clean file takes the one-scan path (every row kept as read); a file with unusable rows is checked text by
    text: both give the kept texts, their labels and source rows, and why each dropped row went."""
    from studyllm_core.services.datasets import DatasetRegistry, DatasetSource

    registry = DatasetRegistry(engine)
    clean = tmp_path / "clean.csv"
    clean.write_text("label,text\na,first reply\nb,second reply\na,third reply\n")
    data = registry.load(DatasetSource(name="clean", path=str(clean), label_column="label"))
    assert (data.texts, data.labels, data.source_rows, data.dropped) == (
        ["first reply", "second reply", "third reply"], ["a", "b", "a"], [0, 1, 2], {})

    mixed = tmp_path / "mixed.csv"
    mixed.write_text('label,text\na,first reply\nb," "\na,"  spaced   reply "\nc,last\n')
    data = registry.load(DatasetSource(name="mixed", path=str(mixed), label_column="label"))
    assert (data.texts, data.labels, data.source_rows) == (["first reply", "  spaced   reply ", "last"], ["a", "a", "c"], [0, 2, 3])
    assert data.dropped == {1: "empty or whitespace-only text"}
