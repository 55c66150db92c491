import pytest

from models.common import memory


@pytest.fixture(autouse=True)
def _nothing_remembered():
    """Each test starts with nothing the process remembers: no description, refusal or session."""
    memory.forget_everything()
    yield
    memory.forget_everything()
