"""ContextCache: a JSON file of entries per context that several writers share."""

from __future__ import annotations

import json

import pytest

from hwsim.errors import SearchError
from hwsim.search.context_cache import ContextCache


def test_writers_on_one_file_keep_each_others_entries(tmp_path):
    path = tmp_path / "c.json"
    a = ContextCache(path, "ctx", "test cache", 3)
    b = ContextCache(path, "ctx", "test cache", 3)  # opened before a wrote anything
    other = ContextCache(path, "other", "test cache", 3)
    a.entries["x"] = 1
    a.save()
    b.entries["y"] = 2
    b.save()
    other.entries["x"] = 9
    other.save()
    assert b.entries == {"x": 1, "y": 2}  # merged what a wrote
    on_disk = json.loads(path.read_text())
    assert on_disk == {"format": 3, "entries": {"ctx": {"x": 1, "y": 2}, "other": {"x": 9}}}
    assert ContextCache(path, "ctx", "test cache", 3).entries == {"x": 1, "y": 2}
    assert ContextCache(path, "new", "test cache", 3).entries == {}


def test_without_a_path_nothing_is_written(tmp_path):
    c = ContextCache(None, "ctx", "test cache", 1)
    c.entries["x"] = 1
    c.save()
    assert c.entries == {"x": 1}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("text", "match"), [
    ("{", r"cannot read the test cache .*c\.json.*delete it"),
    ('{"format": 2, "entries": {}}', r"test cache .*c\.json.* is not format 3"),
    ('{"format": 3, "entries": []}', "is not format 3"),
    ('{"format": 3, "entries": {"ctx": 5}}', "is not format 3")])
def test_unreadable_or_foreign_files_are_refused_naming_them(tmp_path, text, match):
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(SearchError, match=match):
        ContextCache(path, "ctx", "test cache", 3)
