import os
from pathlib import Path

import pytest

from rtransfer.cli import main

ROOT = Path(__file__).resolve().parents[1]
# The workplace lays shared/ beside the checkout (and beside CI's clone); RTRANSFER_SHARED overrides.
SHARED = Path(os.environ.get("RTRANSFER_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    # Fail loudly rather than skip: these tests are the reference checks against the paper's numbers.
    assert (SHARED / "paper" / "scores.csv").exists(), f"shared data not found at {SHARED} (set RTRANSFER_SHARED)"
    return SHARED


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random-init Qwen3-architecture model with a locally trained tokenizer and a chat template (no hub)."""
    from rtransfer.lab.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="session")
def _machine_calibration(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("calibration")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch, _machine_calibration):
    """Each test its own cache root, except the engine's calibration (engines/calibration.py), which describes this
    machine rather than a test: measured once per session, not once per test."""
    monkeypatch.setenv("RTRANSFER_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "calibration").symlink_to(_machine_calibration)


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run
