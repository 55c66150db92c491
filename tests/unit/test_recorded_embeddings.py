"""Query/document and base64 embeddings against answers recorded from a real Xinference 4.1.0
(tests/fixtures/; refresh with: scripts/testbed run -- .venv/bin/python tests/fixtures/record.py
embeddings embeddings_base64 embeddings_prompt_not_found describe_embedding_prompts
embeddings_query_prompt)."""

import base64
import json
import struct
from pathlib import Path

import responses
from dify_plugin.entities.model import EmbeddingInputType

from models.text_embedding import retrieval
from models.text_embedding.text_embedding import XinferenceTextEmbeddingModel

SERVER = "http://recorded.test:9997"
FOLDER = Path(__file__).resolve().parent.parent / "fixtures" / "xinference-4.1.0"


def record(name: str) -> dict:
    return json.loads((FOLDER / f"{name}.json").read_text())


def serve(name: str) -> dict:
    recorded = record(name)
    body = recorded["body"]
    responses.add(
        recorded["request"]["method"],
        SERVER + recorded["request"]["path"],
        body=json.dumps(body) if not isinstance(body, str) else body,
        status=recorded["status"],
        content_type=recorded["content_type"] or "application/json",
    )
    return recorded


def embed(uid: str, texts: list[str], input_type: EmbeddingInputType) -> list[bytes]:
    result = XinferenceTextEmbeddingModel(model_schemas=[]).invoke(
        "m", {"server_url": SERVER, "model_uid": uid}, texts, input_type=input_type
    )
    return [struct.pack(f"<{len(vector)}f", *vector) for vector in result.embeddings]


def float32_of(answer: dict) -> list[bytes]:
    items = sorted(answer["data"], key=lambda item: item["index"])
    return [
        base64.b64decode(item["embedding"]) if isinstance(item["embedding"], str)
        else struct.pack(f"<{len(item['embedding'])}f", *item["embedding"])
        for item in items
    ]


@responses.activate
def test_the_base64_answer_carries_the_same_values_as_the_json_numbers():
    numbers = record("embeddings")["body"]
    described = serve("describe_embedding")["body"]
    packed = serve("embeddings_base64")
    assert isinstance(packed["body"]["data"][0]["embedding"], str)
    assert float32_of(packed["body"]) == float32_of(numbers)

    assert embed(described["model_name"], packed["request"]["body"]["input"], EmbeddingInputType.DOCUMENT) == float32_of(numbers)


@responses.activate
def test_a_prompt_the_model_lacks_is_asked_once_and_the_call_repeated_without_it():
    # The recorded refusal is MiniLM's answer to jina-embeddings-v3's query prompt; the
    # description says the name the plugin would see for a v3 model.
    described = record("describe_embedding")["body"]
    responses.get(f"{SERVER}/v1/models/{described['model_name']}", json={**described, "model_name": "jina-embeddings-v3"})
    missing = serve("embeddings_prompt_not_found")
    assert missing["status"] == 500
    serve("embeddings_base64")

    for _ in range(2):
        vectors = embed(described["model_name"], ["first text", "second text"], EmbeddingInputType.QUERY)
        assert vectors == float32_of(record("embeddings")["body"])

    sent = [json.loads(call.request.body) for call in responses.calls if call.request.method == "POST"]
    assert [body.get("prompt_name") for body in sent] == ["retrieval.query", None, None]
    assert (SERVER, described["model_name"], "jina-embeddings-v3", "retrieval.query") in retrieval._missing_prompts


@responses.activate
def test_a_query_to_a_model_with_a_query_prompt_asks_for_it():
    described = serve("describe_embedding_prompts")["body"]
    answer = serve("embeddings_query_prompt")
    assert described["dimensions"] == 1024

    vectors = embed(described["model_name"], answer["request"]["body"]["input"], EmbeddingInputType.QUERY)

    assert vectors == float32_of(answer["body"])
    assert json.loads(responses.calls[-1].request.body)["prompt_name"] == "query"
