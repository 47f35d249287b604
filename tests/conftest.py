"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny-s random-weight chat model, built once per test session (a few seconds)."""
    from emaware.tinymodel import build_tiny_model, load_tiny_spec

    out_dir = tmp_path_factory.mktemp("tiny-s")
    build_tiny_model(load_tiny_spec(ROOT / "resources/tinymodels/tiny-s.yaml"), out_dir, [])
    return out_dir
