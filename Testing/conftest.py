"""Shared pytest fixtures: a per-checkout cache folder and the tiny real nnU-Net results folder.

Kept deliberately small: only fixtures that several engineers' tests share live here.
``HNTUMORSEG_TEST_CACHE`` overrides the cache location (default ``<repo>/build/test-cache``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTING = Path(__file__).resolve().parent
if str(TESTING) not in sys.path:
    sys.path.insert(0, str(TESTING))


@pytest.fixture(scope="session")
def test_cache_dir() -> Path:
    """A folder kept between test runs for slow-to-build data (never inside the source tree proper)."""
    path = Path(os.environ.get("HNTUMORSEG_TEST_CACHE") or TESTING.parent / "build" / "test-cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiny_nnunet_results(test_cache_dir: Path) -> Path:
    """A real nnU-Net v2 results folder (2 folds, CT+PET, tiny PlainConvUNet) built once with nnunetv2.

    See Testing/nnunet_fixture.py; ``tiny_nnunet_test_cases(folder)`` gives its held-out cases.
    """
    from nnunet_fixture import build_tiny_nnunet_results

    return build_tiny_nnunet_results(test_cache_dir)


@pytest.fixture
def one_torch_thread():
    """Run the test with one torch thread (the 2-core CI machine runs other work beside it),
    restoring the setting afterwards. Use as ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
