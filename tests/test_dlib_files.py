"""Reading dlib's aggregated results file: the columns the importer does not read are skipped
without being decoded (`dlib_files._FLAT_OBJECT`), and that skip must end exactly where json's
decoding would, whatever the strings hold, and must never accept what json rejects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.importers.dlib import reads_column
from benchmark.importers.dlib_files import _FLAT_OBJECT, read_aggregated

# Strings that look like the structure around them: braces, quotes, escapes, keys, commas.
ADVERSARIAL = ['}', '{', '"}', '\\', '\\"', '\\\\"}', '"0": 1}', '{"a": {"b": [1, "}"]}}',
               '}\n,"1":', 'tab\tnew\nline', 'é ∑ 𝔁 \u2028', '\x7f', "'quoted'", '@vae()',
               '"', '\\u0041', '[', ']', ',', ':', '']
VALID = [*(json.dumps({"0": s, "1": 1}) for s in ADVERSARIAL),
         *(json.dumps({s: s}, ensure_ascii=False) for s in ADVERSARIAL),
         '{}', '{ }', '{"0":null,"1":true,"2":false,"3":-0.5e-3,"4":1E+9,"5":0,"6":NaN,'
         '"7":Infinity,"8":-Infinity,"9":"\\u00e9\\/\\b\\f\\n\\r\\t"}',
         '{\n  "0" :  1 ,\r\n\t"1":"x"  }']
INVALID = ['{"0": nul}', '{"0": "a\x01"}', '{"0": "\\q"}', '{"0": 01}', '{"0": 1,}',
           '{"0" 1}', '{"0": "abc}', '{"0": 1.}', '{"0": .5}', '{"0": +1}', '{"0": "\\u12"}',
           '{0: 1}', "{'0': 1}", '{"0": 1 "1": 2}', '{"0": inf}', '{"0": 1', '{"0": "\\"}']


@pytest.mark.parametrize("text", VALID)
def test_skip_ends_where_json_ends(text):
    tail = ', "next": {"0": 1}}'
    match = _FLAT_OBJECT.match(text + tail)
    _, end = json.JSONDecoder().raw_decode(text + tail)
    assert match is not None and match.end() == end


@pytest.mark.parametrize("text", INVALID + ['{"0": [1]}', '{"0": {"a": 1}}'])
def test_skip_never_accepts_what_json_rejects(text):
    """Invalid JSON (and values that are not scalars) is left to json's decoder."""
    assert _FLAT_OBJECT.match(text) is None or _FLAT_OBJECT.match(text).end() < len(text)


def _aggregated(path: Path, extra: dict[str, str]) -> None:
    """A two-record aggregated file in pandas' layout; ``extra`` columns (raw JSON text) are
    ones the importer does not read."""
    columns = {"train_config.dataset.name": '{"0":"\'dsprites_full\'","1":"\'cars3d\'"}', **extra,
               "evaluation_results.discrete_mig": '{"0":0.25,"1":null}',
               "path": '{"0":"a\\/b.json","1":"c.json"}'}
    path.write_text("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in columns.items()) + "}")


def test_skipped_columns_with_adversarial_strings(tmp_path):
    values = ADVERSARIAL[:10]
    extra = {f"evaluation_config.x{i}": json.dumps({"0": s, "1": s[::-1]})
             for i, s in enumerate(values)}
    extra["evaluation_config.nested"] = '{"0": [1, "}"], "1": {"a": "{"}}'  # decoded by json
    agg = tmp_path / "results.json"
    _aggregated(agg, extra)
    assert not any(reads_column(k) for k in extra)
    full, read = read_aggregated(agg), read_aggregated(agg, reads_column)
    assert full.columns["evaluation_config.x1"] == [values[1], values[1][::-1]]
    assert set(read.columns) == {"train_config.dataset.name", "evaluation_results.discrete_mig",
                                 "evaluation_config.nested"}
    assert all(read.columns[k] == full.columns[k] for k in read.columns)
    assert read.paths == full.paths == ["a/b.json", "c.json"] and len(read) == 2


@pytest.mark.parametrize("bad", INVALID[:8])
def test_malformed_skipped_column_is_one_line(tmp_path, capsys, bad):
    agg = tmp_path / "results.json"
    _aggregated(agg, {"evaluation_config.unread": "\n" + bad})
    with pytest.raises(UserError, match="malformed JSON at line 2"):
        read_aggregated(agg, reads_column)
    assert main(["import", "dlib", str(agg), "--study", "x", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {agg}: malformed JSON at line 2")
