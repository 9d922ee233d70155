"""Files and folders written as a whole or not at all."""

import os

import pytest

from melanoma_lab.data.staging import write_atomically


def test_a_file_is_replaced_whole_and_a_failed_write_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "deep" / "metrics.json"
    write_atomically(target, "old")
    write_atomically(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"

    def refuse(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, "new")
    assert target.read_bytes() == b"\x00bytes"  # never half a file
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]  # no temporary file left behind
