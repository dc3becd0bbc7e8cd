"""Reading disentanglement_lib's result files into one columnar table of flat records.

disentanglement_lib (`utils/results.py`, `update_result_directory`) writes, for each step of a
model's pipeline (train, postprocess, evaluation), ``<step dir>/results/json/<step>_config.json``
(the operative gin bindings, every value a string such as ``"'dsprites_full'"`` or ``"@vae()"``)
and ``<step>_results.json`` (the step's results), and copies the earlier steps' files along, so an
evaluation's ``results/json`` folder holds the train, postprocess and evaluation files of that one
model × representation × metric. `dlib_reproduce` lays a model out as
``<model_num>/model/``, ``postprocessed/<mean|sampled>/`` and ``metrics/<mean|sampled>/<metric>/``.

Its aggregation (`utils/aggregate_results.py`) namespaces each evaluation's files into one record
(``train_config.vae.beta``, ``evaluation_results.discrete_mig``, plus ``path``, the file it came
from) and writes all records with pandas' ``DataFrame.to_json``: by default one object per column,
``{"column": {"0": value, "1": value, ...}}``, null where a record lacks the column. We also read
a list of records, the index orientation and JSON lines.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import UserError

STEPS = ("train_config", "train_results", "postprocess_config", "evaluation_config",
         "evaluation_results")
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
# A JSON object whose values are all scalars, as pandas writes a column ({"0": value, ...}),
# matched without building a Python object: a column the importer does not read is skipped at
# regex speed (3x json's). It accepts only valid JSON (strict strings: no raw control characters,
# only JSON's escapes; json's numbers, NaN and Infinity); anything else (nested values, malformed
# text) does not match and is decoded by json, which reports what is wrong and where.
_J_WS = r"[ \t\n\r]*+"
_J_STR = r'"(?:[^"\\\x00-\x1f]++|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*+"'
_J_SCALAR = (rf"(?:{_J_STR}|-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?+[0-9]++)?+"
             r"|null|true|false|NaN|-?Infinity)")
_J_MEMBER = rf"{_J_STR}{_J_WS}:{_J_WS}{_J_SCALAR}{_J_WS}"
_FLAT_OBJECT = re.compile(rf"\{{{_J_WS}(?:{_J_MEMBER}(?:,{_J_WS}{_J_MEMBER})*+)?+\}}")


@dataclass
class Records:
    """Flat dlib records as columns: ``columns[name][i]`` is record i's value (None: absent);
    ``files[i]`` the file record i was read from, relative to the imported path; ``paths[i]``
    the original file dlib's aggregation recorded for it (its ``path`` key), if any."""

    columns: dict[str, list[Any]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    paths: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)

    def column(self, name: str) -> list[Any] | None:
        return self.columns.get(name)


def _malformed(path: Path, exc: json.JSONDecodeError) -> UserError:
    return UserError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot be read: {' '.join(str(exc).split())}") from None


def _load_object(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _malformed(path, exc) from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


def _from_dicts(dicts: list[dict[str, Any]], files: list[str]) -> Records:
    names = list(dict.fromkeys(k for d in dicts for k in d))
    columns = {n: [d.get(n) for d in dicts] for n in names if n != "path"}
    paths = [d.get("path") if isinstance(d.get("path"), str) else None for d in dicts]
    return Records(columns, files, paths)


# ----------------------------------------------------------------- (a) a tree of model outputs


def read_tree(root: Path) -> Records:
    """Every evaluation under ``root`` (a ``results/json`` folder holding
    ``evaluation_results.json``) as one record, and every trained model's own ``results/json``
    (train files only) as a record without evaluation. Postprocessing folders add nothing: their
    files are copied into each evaluation's."""
    dicts, files = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()  # a stable record order, whatever the file system's
        here = Path(dirpath)
        if here.name != "json" or here.parent.name != "results":
            continue
        names = set(filenames)
        if "evaluation_results.json" in names:
            main = "evaluation_results.json"
        elif "train_results.json" in names and "postprocess_config.json" not in names:
            main = "train_results.json"
        else:
            continue
        record: dict[str, Any] = {}
        for step in STEPS:
            if f"{step}.json" in names:
                for key, value in _load_object(here / f"{step}.json").items():
                    record[f"{step}.{key}"] = value
        dicts.append(record)
        files.append((here / main).relative_to(root).as_posix())
    return _from_dicts(dicts, files)


# ---------------------------------------------------------- (b) the aggregated results file


def _members(text: str, pos: int, path: Path, keep: Callable[[str], bool] | None = None):
    """Yields (key, value) of the JSON object starting at ``text[pos]`` one member at a time (a
    column of the aggregated file is decoded, used and dropped before the next), then returns
    the position after it. When the first member is a column (pandas' column orientation), the
    later columns whose name ``keep`` rejects are skipped unread if they hold only scalars (else
    decoded and yielded like the others, so that json reports what is wrong)."""
    try:
        if text[pos] != "{":
            raise json.JSONDecodeError("expected '{'", text, pos)
        pos = _WS.match(text, pos + 1).end()
        if text[pos:pos + 1] == "}":
            return pos + 1
        first, reads = True, None  # the first member is always decoded: it tells the orientation
        while True:
            key, pos = _DECODER.raw_decode(text, pos)
            if not isinstance(key, str):
                raise json.JSONDecodeError("expected a property name", text, pos)
            pos = _WS.match(text, pos).end()
            if text[pos:pos + 1] != ":":
                raise json.JSONDecodeError("expected ':'", text, pos)
            pos = _WS.match(text, pos + 1).end()
            skipped = reads is not None and not reads(key) and _FLAT_OBJECT.match(text, pos)
            if skipped:
                pos = skipped.end()
            else:
                value, pos = _DECODER.raw_decode(text, pos)
                yield key, value
                if first:  # skip columns only, never the records of orient="index"
                    first = False
                    reads = keep if _is_column(key, value) else None
            pos = _WS.match(text, pos).end()
            if text[pos:pos + 1] == "}":
                return pos + 1
            if text[pos:pos + 1] != ",":
                raise json.JSONDecodeError("expected ',' or '}'", text, pos)
            pos = _WS.match(text, pos + 1).end()
    except IndexError:
        raise _malformed(path, json.JSONDecodeError("unexpected end of file", text,
                                                    len(text))) from None
    except json.JSONDecodeError as exc:
        raise _malformed(path, exc) from None


def _is_column(key: str, value: Any) -> bool:
    """Whether a top-level member is a column of pandas' default orientation (not a record of
    orient="index", keyed by its index)."""
    return isinstance(value, dict) and not key.isdigit()


def _columns_orient(first: tuple[str, dict], members, name: str) -> Records:
    """pandas' default orientation: {column: {index: value}}; the first column's index order is
    the record order (pandas writes every index in every column)."""
    order: list[str] = list(first[1])
    where = {k: i for i, k in enumerate(order)}
    columns: dict[str, list[Any]] = {first[0]: list(first[1].values())}
    for key, values in members:
        if not isinstance(values, dict):
            raise UserError(f"{name}: column {key!r} is not an object of records")
        if len(values) == len(order) and list(values) == order:
            columns[key] = list(values.values())
            continue
        for k in values:
            if k not in where:
                where[k] = len(order)
                order.append(k)
        column: list[Any] = [None] * len(order)
        for k, v in values.items():
            column[where[k]] = v
        columns[key] = column
    for column in columns.values():
        column.extend([None] * (len(order) - len(column)))
    raw_paths = columns.pop("path", [None] * len(order))
    paths = [p if isinstance(p, str) else None for p in raw_paths]
    return Records(columns, [name] * len(order), paths)


def read_aggregated(path: Path, keep: Callable[[str], bool] | None = None) -> Records:
    """The records of an aggregated results file (``dlib_aggregate_results``' ``results.json``,
    plain or ``.gz``), or of a single ``aggregate/evaluation.json``. ``keep``: the columns the
    caller reads (``path`` is always read); in pandas' column orientation the others (but the
    first, whose index gives the record order) are left out unread where they hold scalars, as pandas writes them with every
    index in every column (a column's own extra index adds no record then)."""
    text = _read_text(path)
    name = path.name
    pos = _WS.match(text).end()
    if text[pos:pos + 1] == "[":
        try:
            dicts = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _malformed(path, exc) from None
        if not all(isinstance(d, dict) for d in dicts):
            raise UserError(f"{path}: expected a list of JSON objects")
        return _from_dicts(dicts, [name] * len(dicts))
    if text[pos:pos + 1] != "{":
        raise UserError(f"{path}: expected a JSON object or list (dlib's aggregated results)")
    members = _members(text, pos, path,
                       keep and (lambda column: column == "path" or keep(column)))
    first = next(members, None)
    if first is None:
        return Records()
    if _is_column(*first):
        return _columns_orient(first, members, name)
    if isinstance(first[1], dict):  # orient="index": {index: record}
        dicts = [first[1], *(v for _, v in members)]
        if not all(isinstance(d, dict) for d in dicts):
            raise UserError(f"{path}: expected an object of records")
        return _from_dicts(dicts, [name] * len(dicts))
    # One record per object: a single evaluation.json, or JSON lines.
    dicts = []
    while pos < len(text):
        try:
            obj, pos = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise _malformed(path, exc) from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}: expected one JSON object per record")
        dicts.append(obj)
        pos = _WS.match(text, pos).end()
    return _from_dicts(dicts, [name] * len(dicts))
