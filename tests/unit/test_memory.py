"""What the process remembers: each entry for its lifetime, at most so many, emptied by one call."""

import pytest

from models.common import memory, metadata
from models.common.credentials import parse_settings
from models.common.memory import Memory
from models.common.transport import MAX_SESSIONS, session_for
from tests.unit.xinference import credentials, describe_llm


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(memory.time, "monotonic", lambda: now[0])
    return now


def test_an_entry_lives_its_lifetime_from_when_it_was_stored(clock):
    learnt: Memory[str, int] = Memory(lifetime=300.0)
    learnt.put("model", 1)
    clock[0] += 299.0
    assert learnt.get("model") == 1
    clock[0] += 1.0
    assert learnt.get("model") is None
    assert "model" not in learnt


def test_beyond_its_bound_the_least_recently_used_entry_goes_and_is_dropped_properly(clock):
    dropped: list[str] = []
    sessions: Memory[str, str] = Memory(max_entries=2, on_drop=dropped.append)
    sessions.put("a", "session a")
    sessions.put("b", "session b")
    assert sessions.get("a") == "session a"  # a use: "b" is now the least recently used
    sessions.put("c", "session c")
    assert ("a" in sessions, "b" in sessions, "c" in sessions) == (True, False, True)
    assert dropped == ["session b"]


def test_get_or_put_makes_a_value_once_and_add_says_whether_it_stored(clock):
    made: list[int] = []
    locks: Memory[str, int] = Memory()
    assert locks.get_or_put("key", lambda: made.append(1) or len(made)) == 1
    assert locks.get_or_put("key", lambda: made.append(1) or len(made)) == 1
    assert made == [1]
    assert locks.add("other", 5) is True
    assert locks.add("other", 6) is False
    assert locks.get("other") == 5


@pytest.mark.usefixtures("clock")
def test_forget_everything_empties_the_plugins_memories_and_closes_pooled_sessions(monkeypatch):
    monkeypatch.setattr(metadata.XinferenceClient, "get_json", lambda self, path: describe_llm())
    settings = parse_settings(credentials())
    metadata.describe(settings)
    session = session_for(settings)
    closed: list[bool] = []
    monkeypatch.setattr(session, "close", lambda: closed.append(True))
    memory.forget_everything()
    assert closed == [True]
    assert session_for(settings) is not session
    fetched: list[str] = []
    monkeypatch.setattr(metadata.XinferenceClient, "get_json", lambda self, path: fetched.append(path) or describe_llm())
    metadata.describe(settings)
    assert len(fetched) == 1


def test_the_session_pool_keeps_the_most_recently_used_sessions():
    first = session_for(parse_settings(credentials(server_url="http://server-0.test:9997")))
    for number in range(1, MAX_SESSIONS + 1):
        session_for(parse_settings(credentials(server_url=f"http://server-{number}.test:9997")))
    assert session_for(parse_settings(credentials(server_url="http://server-0.test:9997"))) is not first
