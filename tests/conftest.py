"""Shared fixtures: real settings, real verified models, real images.

The test command (scripts/test) pulls u2net and u2netp into the model directory first; these
fixtures only find and verify them, as the product does.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from cleancut.config import Settings, load
from cleancut.engine import Engine

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings from the environment (CLEANCUT_MODEL_DIR), as a user's process would build them."""
    return load()


@pytest.fixture(scope="session")
def model_dir(settings: Settings) -> Path:
    for name in ("u2net", "u2netp"):
        if not (settings.model_dir / f"{name}.onnx").is_file():
            pytest.fail(
                f"{name} is not installed in {settings.model_dir}; run the README's test command "
                f"(it runs: cleancut models pull u2net u2netp)"
            )
    return settings.model_dir


@pytest.fixture(scope="session")
def engine(settings: Settings, model_dir: Path) -> Engine:
    return Engine(settings)


@pytest.fixture(scope="session")
def golden_manifest() -> dict:
    return json.loads((GOLDEN / "manifest.json").read_text())


def golden_input(name: str) -> bytes:
    return (GOLDEN / "inputs" / name).read_bytes()


def open_png(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.fixture
def restore_pillow_bomb_guard() -> Iterator[None]:
    """For tests that set Pillow's process-wide ``MAX_IMAGE_PIXELS`` (as ``configure_process``
    does): the tests after them see it as it was."""
    saved = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = saved
