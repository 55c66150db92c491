"""One embedding call of `max_chunks` texts, as many as Dify sends at once, at 384, 1,024
and 4,096 dimensions: the answer line stays well under the daemon's 5,242,880 bytes.

The stub answers full-precision floats, as real servers do. Before `max_chunks` followed
the dimensions (a fixed 1,024), the 384-dimension answer alone was a ~8 MB line and the
daemon killed the plugin ("bufio.Scanner: token too long").
"""

import pytest

from models.text_embedding.limits import DAEMON_LINE_LIMIT
from tests.daemon.conftest import LONGEST_LINES, stub_credentials
from tests.daemon.stub_models import EMBEDDING_DIMENSIONS


@pytest.mark.parametrize("uid", list(EMBEDDING_DIMENSIONS))
def test_a_call_of_max_chunks_texts_fits_one_line(call, stub, uid):
    credentials = stub_credentials(stub, uid)
    schema = call("model/schema", "text-embedding", credentials).chunks[-1]["model_schema"]
    max_chunks = schema["model_properties"]["max_chunks"]
    texts = [f"chunk {number} of a knowledge base document" for number in range(max_chunks)]

    result = call("text_embedding/invoke", "text-embedding", credentials, texts=texts, input_type="document")

    assert result.ok, result.error
    vectors = result.chunks[-1]["embeddings"]
    assert len(vectors) == max_chunks and {len(vector) for vector in vectors} == {EMBEDDING_DIMENSIONS[uid]}
    LONGEST_LINES[f"{EMBEDDING_DIMENSIONS[uid]} dims × {max_chunks} texts"] = result.longest_line_bytes
    print(f"\n{EMBEDDING_DIMENSIONS[uid]} dimensions: max_chunks {max_chunks}, "
          f"longest answer line {result.longest_line_bytes:,} bytes")  # fmt: skip
    assert result.longest_line_bytes < 0.6 * DAEMON_LINE_LIMIT
