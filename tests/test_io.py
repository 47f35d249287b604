"""Atomic writes: complete or absent, and readable by whoever the user's umask allows."""

from __future__ import annotations

import os
import stat

import pytest

from emaware.io import atomic_write, write_json


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "score.json", {"score": 0.5})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "score.json").stat().st_mode) == mode


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "table.tsv") as handle:
            handle.write("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
