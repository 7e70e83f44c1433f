from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert (SHARED_DATA / "market").is_dir(), f"tests read real data from {SHARED_DATA}"
    return SHARED_DATA
