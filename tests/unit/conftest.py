import pytest

from models.common import metadata


@pytest.fixture(autouse=True)
def _empty_describe_cache():
    """Each test starts with no cached model descriptions (the cache is process-wide)."""
    metadata._entries.clear()
    yield
    metadata._entries.clear()
