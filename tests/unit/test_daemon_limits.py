"""What the Dify plugin daemon enforces, kept by the plugin: answer lines under its limit, requests within its time.

The daemon kills a plugin whose stdout line passes 5,242,880 bytes; an embedding answer
is one line holding every vector of the call. The sizes below are measured on answers
serialised the way the SDK writes them (pydantic's `model_dump_json`).
"""

import random
from decimal import Decimal

import pytest
import responses
from dify_plugin.entities.model import ModelPropertyKey
from dify_plugin.entities.model.text_embedding import EmbeddingUsage, TextEmbeddingResult

from models.common.credentials import parse_settings
from models.text_embedding.limits import DAEMON_LINE_LIMIT, DEFAULT_DIMENSIONS, max_chunks
from models.text_embedding.vectors import float32_vector
from tests.unit.test_text_embedding import embedder, serve_describe
from tests.unit.xinference import credentials


def answer_line_bytes(texts: int, dimensions: int, seed: int = 0) -> int:
    """The size of the JSON answer for `texts` vectors as the SDK writes it, at the float32
    precision the plugin sends."""
    rng = random.Random(seed)
    vectors = [float32_vector([rng.gauss(0, 0.05) for _ in range(dimensions)]) for _ in range(texts)]
    usage = EmbeddingUsage(tokens=1, total_tokens=1, unit_price=Decimal(0), price_unit=Decimal(0),
                           total_price=Decimal(0), currency="USD", latency=0.1)  # fmt: skip
    return len(TextEmbeddingResult(model="m", embeddings=vectors, usage=usage).model_dump_json().encode())


@pytest.mark.parametrize("dimensions", [384, 1024, 4096, 8192])
def test_a_full_call_stays_well_under_the_daemon_line_limit(dimensions):
    texts = max_chunks(dimensions, 1024)
    assert texts >= 1
    assert answer_line_bytes(texts, dimensions) < 0.6 * DAEMON_LINE_LIMIT


def test_small_vectors_keep_the_batch_derived_limit_and_huge_ones_still_get_one_text():
    assert max_chunks(8, 1024) == 1024
    assert max_chunks(1_000_000, 1024) == 1


def test_no_reported_dimensions_assumes_wide_vectors():
    assert max_chunks(None, 1024) == max_chunks(DEFAULT_DIMENSIONS, 1024) < max_chunks(384, 1024)


@responses.activate
@pytest.mark.parametrize(("dimensions", "expected"), [(384, 545), (1024, 204), (4096, 51), (None, 51)])
def test_the_schema_tells_dify_the_limit_for_the_described_dimensions(dimensions, expected):
    serve_describe(dimensions=dimensions)
    schema = embedder().get_customizable_model_schema("my-embedder", credentials())
    assert schema.model_properties[ModelPropertyKey.MAX_CHUNKS] == expected


# ---- the daemon's execution limit --------------------------------------------------------


@pytest.mark.parametrize(("entered", "used"), [("60", 60.0), ("600", 600.0), ("1200", 600.0), ("86400", 600.0)])
def test_the_invoke_timeout_is_cut_to_the_daemons_execution_limit(entered, used):
    settings = parse_settings({"server_url": "http://127.0.0.1:9997", "model_uid": "m", "invoke_timeout": entered})
    assert settings.invoke_timeout == used
