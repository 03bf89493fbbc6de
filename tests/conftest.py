import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def encoder():
    """The real all-MiniLM-L6-v2 from the installed wheel, loaded once for the session."""
    from retriever_service.encoder import Encoder

    return Encoder.load()
