"""Vectors on both legs: base64 float32 from Xinference (4.0+) or JSON numbers (older),
and float32 precision towards Dify."""

import base64
import json
import random
import struct

import pytest
import responses
from dify_plugin.core.server.stdio.response_writer import StdioResponseWriter
from dify_plugin.entities.model import EmbeddingInputType
from dify_plugin.errors.model import InvokeServerUnavailableError

from models.text_embedding.text_embedding import XinferenceTextEmbeddingModel
from tests.unit.xinference import SERVER, UID, credentials, describe_embedding

DESCRIBE = f"{SERVER}/v1/models/{UID}"
EMBEDDINGS = f"{SERVER}/v1/embeddings"


def float32(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def model_vectors(count: int, width: int, seed: int = 7) -> list[list[float]]:
    """What a model computes: float32 values, as JSON numbers carry them (17 digits)."""
    rng = random.Random(seed)
    return [list(struct.unpack(f"<{width}f", float32([rng.gauss(0, 0.05) for _ in range(width)]))) for _ in range(count)]


def serve(vectors: list[list[float]], base64_capable: bool) -> None:
    """Xinference 4.x packs vectors when asked; older servers ignore the field."""
    responses.get(DESCRIBE, json={**describe_embedding(dimensions=len(vectors[0])), "model_engine": "vllm"})

    def callback(request):
        packed = base64_capable and json.loads(request.body).get("encoding_format") == "base64"
        data = [
            {"index": i, "object": "embedding",
             "embedding": base64.b64encode(float32(vector)).decode() if packed else vector}
            for i, vector in enumerate(vectors)
        ]
        return 200, {}, json.dumps({"object": "list", "model": UID, "data": data})

    responses.add_callback(responses.POST, EMBEDDINGS, callback=callback)


def embed(count: int):
    texts = [f"text {i}" for i in range(count)]
    return XinferenceTextEmbeddingModel(model_schemas=[]).invoke("e", credentials(), texts, input_type=EmbeddingInputType.DOCUMENT)


@pytest.mark.parametrize("base64_capable", [True, False], ids=["4.x base64", "older: JSON numbers"])
@responses.activate
def test_dify_gets_every_float32_value_exactly_in_at_most_9_significant_digits(base64_capable):
    vectors = model_vectors(3, 384)
    serve(vectors, base64_capable)

    result = embed(3)

    assert [float32(vector) for vector in result.embeddings] == [float32(vector) for vector in vectors]
    # Each value is its own 9-digit rounding, so its shortest form has at most 9 digits.
    assert all(value == float(f"{value:.9g}") for vector in result.embeddings for value in vector)
    assert not all(value == float(f"{value:.9g}") for vector in vectors for value in vector)
    assert json.loads(responses.calls[-1].request.body)["encoding_format"] == "base64"


@responses.activate
def test_base64_answers_are_about_a_quarter_of_the_json_numbers():
    vectors = model_vectors(4, 1024)
    serve(vectors, base64_capable=True)
    embed(4)
    packed = len(responses.calls[-1].response.content)
    as_numbers = len(json.dumps({"data": [{"index": i, "embedding": v} for i, v in enumerate(vectors)]}))
    assert packed < 0.3 * as_numbers


@responses.activate
def test_the_line_to_the_daemon_is_shorter_than_with_full_doubles():
    vectors = model_vectors(8, 1024)
    serve(vectors, base64_capable=True)
    result = embed(8)

    writer = StdioResponseWriter()
    line = writer.session_message_text("s", result)
    with_doubles = writer.session_message_text("s", result.model_copy(update={"embeddings": vectors}))
    assert len(line) < 0.7 * len(with_doubles)


@pytest.mark.parametrize(
    ("embedding", "words"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"\x00\x00\x80\x3f\x00").decode(), "5 bytes, not whole float32 values"),
    ],
)
@responses.activate
def test_a_broken_base64_vector_is_a_server_error_saying_what_arrived(embedding, words):
    responses.get(DESCRIBE, json=describe_embedding())
    responses.post(EMBEDDINGS, json={"object": "list", "data": [{"index": 0, "object": "embedding", "embedding": embedding}]})
    with pytest.raises(InvokeServerUnavailableError, match=words):
        embed(1)


@responses.activate
def test_special_values_survive():
    vectors = [[0.0, -0.0, 1e-45, -3.4028234663852886e38, 1.0, float("inf")]]
    serve(vectors, base64_capable=True)
    result = embed(1)
    assert float32(result.embeddings[0]) == float32(vectors[0])
