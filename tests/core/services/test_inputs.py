"""`column_names` reads a file's header only, and names the same columns `read_texts` reads."""

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
