import pytest

from models.common import metadata
from models.llm import tool_stream


@pytest.fixture(autouse=True)
def _empty_describe_cache():
    """Each test starts with no cached model descriptions nor remembered refusals (process-wide)."""
    metadata._entries.clear()
    tool_stream._refusals.clear()
    yield
    metadata._entries.clear()
    tool_stream._refusals.clear()
