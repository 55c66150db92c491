"""Query vs document and float32 vectors against a real Xinference server (scripts/testbed).

`tiny-embed-prompts` is a tiny sentence-transformers model whose config names the prompts
`query` ("query: ") and `document` ("passage: ") (scripts/testbed_build_models.py);
`tiny-embed` is all-MiniLM-L6-v2, which has none.
"""

import base64
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from dify_plugin.entities.model import EmbeddingInputType, ModelPropertyKey

from models.common.errors import detail_of, from_status
from models.text_embedding.text_embedding import XinferenceTextEmbeddingModel

pytestmark = pytest.mark.integration

QUERY_PROMPT, DOCUMENT_PROMPT = "query: ", "passage: "  # as the testbed builds the model
JINA_V3_ALIAS = "tiny-jina-embeddings-v3-alias"  # MiniLM under a name both sides take for jina-embeddings-v3
TEXTS = ["What is the capital of France?", "Paris is the capital of France.", "Bananas are yellow."]


def credentials(testbed: dict, role: str) -> dict:
    return {"server_url": testbed["url"], "model_uid": testbed["uids"][role], "api_key": testbed.get("api_key") or ""}


def direct(testbed: dict, role: str, texts: list[str], **fields) -> list[bytes]:
    """The server's vectors for these texts, each as its float32 bytes."""
    headers = {"Authorization": f"Bearer {testbed['api_key']}"} if testbed.get("api_key") else {}
    body = {"model": testbed["uids"][role], "input": texts, **fields}
    response = requests.post(testbed["url"] + "/v1/embeddings", json=body, headers=headers, timeout=120)
    response.raise_for_status()
    return [float32(item["embedding"]) for item in sorted(response.json()["data"], key=lambda item: item["index"])]


def through_plugin(testbed: dict, role: str, texts: list[str], input_type: EmbeddingInputType) -> list[bytes]:
    result = XinferenceTextEmbeddingModel(model_schemas=[]).invoke(
        "tiny", credentials(testbed, role), texts, input_type=input_type
    )
    return [float32(vector) for vector in result.embeddings]


def float32(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def skip_before(testbed: dict, major: int, why: str) -> None:
    version = testbed.get("xinference_version") or ""
    if version and int(version.split(".")[0]) < major:
        pytest.skip(f"Xinference {version} {why}")


@pytest.fixture(scope="module")
def prompts_model(testbed):
    if "embedding_prompts" not in testbed["uids"]:
        # scripts/testbed launches it on Xinference 4.x only: older sentence-transformers cannot load it.
        pytest.skip(f"no embedding model with prompts on this testbed (Xinference {testbed.get('xinference_version')})")
    return testbed


def test_a_query_is_embedded_with_the_models_query_prompt(prompts_model):
    ours = through_plugin(prompts_model, "embedding_prompts", TEXTS, EmbeddingInputType.QUERY)
    assert ours == direct(prompts_model, "embedding_prompts", TEXTS, prompt_name="query")
    # The prompt is the text the model's config names, put in front of each text.
    assert ours == direct(prompts_model, "embedding_prompts", [QUERY_PROMPT + text for text in TEXTS])
    assert ours != direct(prompts_model, "embedding_prompts", TEXTS)


def test_a_document_is_embedded_with_the_models_document_prompt(prompts_model):
    ours = through_plugin(prompts_model, "embedding_prompts", TEXTS, EmbeddingInputType.DOCUMENT)
    assert ours == direct(prompts_model, "embedding_prompts", TEXTS, prompt_name="document")
    assert ours == direct(prompts_model, "embedding_prompts", [DOCUMENT_PROMPT + text for text in TEXTS])
    assert ours != through_plugin(prompts_model, "embedding_prompts", TEXTS, EmbeddingInputType.QUERY)


def test_a_model_without_prompts_of_its_own_is_unaffected(testbed):
    # sentence-transformers 5 (Xinference 4.x) gives every model empty `query` and
    # `document` prompts when its config names none: asking for them changes nothing.
    plain = direct(testbed, "embedding", TEXTS)
    assert through_plugin(testbed, "embedding", TEXTS, EmbeddingInputType.QUERY) == plain
    assert through_plugin(testbed, "embedding", TEXTS, EmbeddingInputType.DOCUMENT) == plain


class RecordingProxy:
    """Loopback HTTP in front of the real server: forwards every request as it is and keeps
    the JSON bodies, so a test sees what the plugin sent without touching the plugin."""

    def __init__(self, target: str) -> None:
        self.bodies: list[tuple[str, dict]] = []
        proxy = self

        class Forward(BaseHTTPRequestHandler):
            def do_GET(self):
                self._forward(None)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.bodies.append((self.path, json.loads(raw or b"{}")))
                self._forward(raw)

            def _forward(self, raw):
                headers = {name: value for name, value in self.headers.items() if name.lower() in ("authorization", "content-type")}
                answer = requests.request(self.command, target + self.path, data=raw, headers=headers, timeout=120)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def prompts_sent(self) -> list[str | None]:
        return [body.get("prompt_name") for path, body in self.bodies if path == "/v1/embeddings"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def named_like_jina_v3(testbed):
    """The testbed's MiniLM launched again under a name the plugin (and the server) take for
    jina-embeddings-v3, whose `retrieval.query` prompt MiniLM lacks; removed afterwards."""
    # The plugin asks for prompts only where the description names the sentence-transformers
    # engine, which it does from Xinference 3.x on.
    skip_before(testbed, 3, "describes no embedding engine, so the plugin sends no prompt")
    admin = {"Authorization": f"Bearer {testbed['admin_token']}"} if testbed.get("admin_token") else {}
    url = testbed["url"]
    plain = requests.get(f"{url}/v1/model_registrations/embedding/{testbed['uids']['embedding']}", headers=admin, timeout=60)
    plain.raise_for_status()
    spec = {name: plain.json()[name] for name in ("version", "dimensions", "max_tokens", "language")}
    spec["model_specs"] = [{name: value for name, value in model_spec.items() if name in
                            ("model_format", "model_id", "model_uri", "quantization")}
                           for model_spec in plain.json()["model_specs"]]  # fmt: skip
    registered = requests.post(f"{url}/v1/model_registrations/embedding", headers=admin, timeout=60,
                               json={"model": json.dumps({**spec, "model_name": JINA_V3_ALIAS}), "persist": False})  # fmt: skip
    registered.raise_for_status()
    try:
        launched = requests.post(f"{url}/v1/models", headers=admin, timeout=600, json={
            "model_uid": JINA_V3_ALIAS, "model_name": JINA_V3_ALIAS, "model_type": "embedding",
            "model_engine": "sentence_transformers"})  # fmt: skip
        assert launched.status_code == 200, launched.text
        yield {**testbed, "uids": {**testbed["uids"], "jina_alias": JINA_V3_ALIAS}}
    finally:
        requests.delete(f"{url}/v1/models/{JINA_V3_ALIAS}", headers=admin, timeout=120)
        requests.delete(f"{url}/v1/model_registrations/embedding/{JINA_V3_ALIAS}", headers=admin, timeout=60)


@pytest.fixture
def proxy(testbed):
    server = RecordingProxy(testbed["url"])
    yield server
    server.close()


def test_a_prompt_the_model_lacks_is_learned_from_the_servers_answer_and_asked_once(named_like_jina_v3, proxy):
    testbed = named_like_jina_v3
    # The server itself refuses the prompt the plugin asks a jina-embeddings-v3 model for.
    headers = {"Authorization": f"Bearer {testbed['api_key']}"} if testbed.get("api_key") else {}
    refused = requests.post(testbed["url"] + "/v1/embeddings", headers=headers, timeout=60, json={
        "model": JINA_V3_ALIAS, "input": ["x"], "prompt_name": "retrieval.query"})  # fmt: skip
    assert refused.status_code == 500 and "Prompt name 'retrieval.query' not found" in refused.text
    # ... in words the plugin's one classifier reads as a missing prompt.
    assert from_status(refused.status_code, detail_of(refused.text), JINA_V3_ALIAS).prompt_name == "retrieval.query"
    plain = direct(testbed, "jina_alias", TEXTS)
    through_proxy = {**testbed, "url": proxy.url}

    first = through_plugin(through_proxy, "jina_alias", TEXTS, EmbeddingInputType.QUERY)
    second = through_plugin(through_proxy, "jina_alias", TEXTS, EmbeddingInputType.QUERY)

    assert first == second == plain  # the texts embedded without the prompt the model lacks
    # Asked once, refused, sent again without it; the next call no longer asks.
    assert proxy.prompts_sent() == ["retrieval.query", None, None]


def test_base64_vectors_are_the_same_float32_values(testbed):
    skip_before(testbed, 4, "ignores encoding_format: base64 and sends floats (the plugin reads both)")
    texts = [f"Sentence {n} about the weather." for n in range(5)]
    headers = {"Authorization": f"Bearer {testbed['api_key']}"} if testbed.get("api_key") else {}
    body = {"model": testbed["uids"]["embedding"], "input": texts, "encoding_format": "base64"}
    answer = requests.post(testbed["url"] + "/v1/embeddings", json=body, headers=headers, timeout=60).json()
    packed = [base64.b64decode(item["embedding"]) for item in sorted(answer["data"], key=lambda item: item["index"])]
    assert packed == direct(testbed, "embedding", texts)
    assert through_plugin(testbed, "embedding", texts, EmbeddingInputType.DOCUMENT) == packed


def test_max_chunks_follows_the_width_of_the_vectors(prompts_model):
    model = XinferenceTextEmbeddingModel(model_schemas=[])
    narrow = model.get_customizable_model_schema("tiny", credentials(prompts_model, "embedding"))
    wide = model.get_customizable_model_schema("tiny", credentials(prompts_model, "embedding_prompts"))
    # 384 and 1,024 dimensions: an answer line of at most 4 MiB either way.
    assert narrow.model_properties[ModelPropertyKey.MAX_CHUNKS] == 545
    assert wide.model_properties[ModelPropertyKey.MAX_CHUNKS] == 204
