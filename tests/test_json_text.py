"""Tests of data.json_text: JSON with caps on size and nesting, one UserError naming the source."""

import json

import pytest

from data.errors import UserError
from data.json_text import json_depth, parse_json, read_json_file


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("3", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "\\\\", "\\"[["]', 1),  # brackets, escaped quotes and backslashes in strings
        ("[[[", 3),  # unbalanced: measured as far as it goes
    ],
)
def test_json_depth(text, depth):
    assert json_depth(text) == depth


def test_a_value_within_the_caps_is_parsed():
    value = {"layers": [{"type": "conv", "name": "c1", "body": [[1, 2], "[x]"]}]}
    assert parse_json(json.dumps(value), "a.json") == value
    assert parse_json(json.dumps(value).encode(), "a.json") == value


def test_deep_nesting_is_refused_before_parsing():
    with pytest.raises(
        UserError, match=r"^deep.json: JSON nested 100000 levels deep, more than the 100"
    ):
        parse_json("[" * 100_000 + "]" * 100_000, "deep.json")


def test_nesting_at_the_cap_is_parsed():
    assert parse_json("[" * 5 + "]" * 5, "ok.json", max_depth=5) == [[[[[]]]]]
    with pytest.raises(UserError, match="nested 6 levels deep, more than the 5"):
        parse_json("[" * 6 + "]" * 6, "deep.json", max_depth=5)


def test_a_recursion_error_is_a_user_error(monkeypatch):
    monkeypatch.setattr("data.json_text.json_depth", lambda text: 0)  # the scan fooled
    with pytest.raises(UserError, match="deep.json: JSON nested too deep"):
        parse_json("[" * 100_000 + "]" * 100_000, "deep.json")


def test_oversized_text_is_refused():
    with pytest.raises(UserError, match="big.json: 1001 bytes of JSON text, more than the 1000"):
        parse_json(" " * 999 + "[]", "big.json", max_bytes=1000)
    with pytest.raises(UserError, match="more than the 1000"):
        parse_json('"' + "é" * 500 + '"', "utf8.json", max_bytes=1000)  # 1002 bytes in UTF-8


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("[1,", "bad.json is not valid JSON"), (b"\xff[]", "bad.json is not UTF-8 text")],
)
def test_invalid_text(text, fragment):
    with pytest.raises(UserError, match=fragment):
        parse_json(text, "bad.json")


def test_read_json_file(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text('[{"type": "relu"}]')
    assert read_json_file(path) == [{"type": "relu"}]
    path.write_text(" " * 2000 + "[]")
    with pytest.raises(UserError, match=f"{path}: more than 1000 bytes"):
        read_json_file(path, max_bytes=1000)
    with pytest.raises(UserError, match="no such file"):
        read_json_file(tmp_path / "nowhere.json")
    with pytest.raises(UserError, match="cannot read"):
        read_json_file(tmp_path)


def test_read_json_file_never_reads_a_device_in_full():
    with pytest.raises(UserError, match="/dev/zero: more than 1000000 bytes"):
        read_json_file("/dev/zero")
