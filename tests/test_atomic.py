"""Atomic writes leave either the old file or the complete new one, with ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from spectraclip.io.atomic import atomic_open, atomic_path, current_umask


def test_failed_write_keeps_the_old_file_and_no_debris(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as fh:
        fh.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_written_file_gets_umask_permissions(tmp_path):
    target = tmp_path / "sub" / "new.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~current_umask()
