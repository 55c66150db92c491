"""What differs between Xinference versions, replayed from answers recorded on each real version
(tests/fixtures/xinference-<version>/, by record.py and record_versions.py)."""

import json
from pathlib import Path

import pytest
import responses
from dify_plugin.entities.model.message import PromptMessageTool, UserPromptMessage
from dify_plugin.errors.model import InvokeAuthorizationError, InvokeError

from models.llm.llm import XinferenceLargeLanguageModel
from models.rerank.rerank import XinferenceRerankModel
from models.text_embedding.text_embedding import XinferenceTextEmbeddingModel
from tests.unit.xinference import servers_words

SERVER = "http://recorded.test:9997"


def names_unknown_model(error: InvokeError) -> bool:
    """What the user reads: the plugin says there is no running model with that UID."""
    return "no running model with UID" in str(error)
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
WEATHER_TOOL = PromptMessageTool(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def version_tuple(folder: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in folder.name.removeprefix("xinference-").split("."))


VERSIONS = sorted(FIXTURES.glob("xinference-*"), key=version_tuple)


def with_case(*names: str) -> list:
    """The recorded versions that have all these cases."""
    folders = [folder for folder in VERSIONS if all((folder / f"{name}.json").is_file() for name in names)]
    return [pytest.param(folder, id=folder.name) for folder in folders]


def test_every_supported_version_is_recorded():
    assert {folder.name for folder in VERSIONS} >= {"xinference-1.17.1", "xinference-4.1.0"}


def load(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def serve(folder: Path, name: str, path: str | None = None) -> dict:
    record = load(folder, name)
    body = record["body"]
    responses.add(
        record["request"]["method"],
        SERVER + (path or record["request"]["path"]),
        body=body if isinstance(body, str) else json.dumps(body),
        status=record["status"],
        headers=record.get("headers") or {},
        content_type=record["content_type"] or "application/json",
    )
    return record


def credentials(folder: Path, role: str, **extra) -> dict:
    uids = json.loads((folder / "_meta.json").read_text())["uids"]
    return {"server_url": SERVER, "model_uid": uids[role], **extra}


@pytest.mark.parametrize("folder", with_case("describe_llm", "chat_tools", "chat_tools_stream"))
@responses.activate
def test_an_agents_streamed_tool_call_arrives_whole_on_every_version(folder):
    serve(folder, "describe_llm")
    refused = serve(folder, "chat_tools_stream")["status"] == 400
    expected = serve(folder, "chat_tools")["body"]["choices"][0]["message"]["tool_calls"][0]["function"]
    chunks = list(
        XinferenceLargeLanguageModel(model_schemas=[]).invoke(
            "m",
            credentials(folder, "chat"),
            [UserPromptMessage(content="What is the weather in Paris?")],
            {},
            tools=[WEATHER_TOOL],
            stream=True,
        )
    )
    [call] = chunks[-1].delta.message.tool_calls
    assert call.function.name == expected["name"]
    assert json.loads(call.function.arguments) == json.loads(expected["arguments"])
    assert chunks[-1].delta.finish_reason == "tool_calls"
    # Xinference 1.10 to 2.1 refuse stream + tools on a transformers-engine Qwen: then it went blocking.
    assert refused == ((1, 10) <= version_tuple(folder)[:2] < (2, 2))
    assert len(responses.calls) == (3 if refused else 2)


@pytest.mark.parametrize("folder", with_case("describe_embedding", "embeddings"))
@responses.activate
def test_long_texts_are_cut_by_the_server_from_3_x_and_by_the_plugin_before(folder):
    described = serve(folder, "describe_embedding")["body"]
    serve(folder, "embeddings")
    long_text = " ".join(["word"] * 2000)
    XinferenceTextEmbeddingModel(model_schemas=[]).invoke("m", credentials(folder, "embedding"), [long_text, "short"])
    sent = json.loads(responses.calls[-1].request.body)
    server_cuts = version_tuple(folder) >= (3, 0)
    assert ("model_engine" in described) == server_cuts
    assert ("truncate_prompt_tokens" in sent) == server_cuts
    assert (sent["input"][0] == long_text) == server_cuts


@pytest.mark.parametrize("folder", with_case("describe_embedding", "embeddings_unknown_uid"))
@responses.activate
def test_an_unknown_uid_on_embeddings_is_named_as_such_whatever_the_status(folder):
    serve(folder, "describe_embedding")
    record = serve(folder, "embeddings_unknown_uid")
    with pytest.raises(InvokeError) as raised:
        XinferenceTextEmbeddingModel(model_schemas=[]).invoke("m", credentials(folder, "embedding"), ["x"])
    assert names_unknown_model(raised.value), (record["status"], str(raised.value))


@pytest.mark.parametrize("folder", with_case("describe_rerank", "rerank_unknown_uid"))
@responses.activate
def test_an_unknown_uid_on_rerank_is_named_as_such_whatever_the_status(folder):
    serve(folder, "describe_rerank")
    record = serve(folder, "rerank_unknown_uid")
    with pytest.raises(InvokeError) as raised:
        XinferenceRerankModel(model_schemas=[]).invoke("m", credentials(folder, "rerank"), "q", ["d"])
    assert names_unknown_model(raised.value), (record["status"], str(raised.value))


@pytest.mark.parametrize("folder", with_case("describe_loading"))
@responses.activate
def test_a_model_still_loading_gives_the_servers_words(folder):
    record = serve(folder, "describe_loading", path="/v1/models/tiny-embed")
    with pytest.raises(InvokeError) as raised:
        XinferenceTextEmbeddingModel(model_schemas=[]).invoke(
            "m", credentials(folder, "embedding", max_retries="0"), ["x"]
        )
    words = record["body"]["detail"] if isinstance(record["body"], dict) else record["body"]
    assert servers_words(str(words))[:40] in str(raised.value)


@pytest.mark.parametrize("folder", with_case("auth_no_key", "auth_bad_key"))
@responses.activate
def test_missing_and_bad_keys_are_authorization_errors_with_the_servers_words(folder):
    for case in ("auth_no_key", "auth_bad_key"):
        responses.reset()
        record = serve(folder, case)
        assert record["status"] == 401
        with pytest.raises(InvokeAuthorizationError) as raised:
            list(
                XinferenceLargeLanguageModel(model_schemas=[]).invoke(
                    "m", credentials(folder, "chat", api_key="sk-badKey0000000"), [UserPromptMessage(content="Hi")], {}
                )
            )
        assert record["body"]["detail"] in str(raised.value)
        assert "sk-badKey0000000" not in str(raised.value)
