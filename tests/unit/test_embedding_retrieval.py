"""Query vs document: what each kind of embedding model gets told, and what happens when a
model has no such prompt. Answers in the shapes Xinference 4.1.0 sends (see
tests/fixtures/ for the recorded ones)."""

import json
import logging
import threading

import pytest
import responses
from dify_plugin.entities.model import EmbeddingInputType
from dify_plugin.entities.model.text_embedding import MultiModalContent, MultiModalContentType
from dify_plugin.errors.model import InvokeServerUnavailableError

from models.text_embedding import retrieval
from models.text_embedding.text_embedding import XinferenceTextEmbeddingModel
from tests.unit.xinference import SERVER, UID, credentials, describe_embedding

DESCRIBE = f"{SERVER}/v1/models/{UID}"
EMBEDDINGS = f"{SERVER}/v1/embeddings"
QUERY, DOCUMENT = EmbeddingInputType.QUERY, EmbeddingInputType.DOCUMENT
# The error the sentence-transformers engine raises, as the REST layer wraps it (a 500).
NO_SUCH_PROMPT = (
    "[address=127.0.0.1:35001, pid=4242] Prompt name '{name}' not found in the configured "
    "prompts dictionary with keys []."
)
RETRIEVAL_FIELDS = ("prompt_name", "task")


def serve_describe(model_name: str, engine: str | None = "sentence_transformers") -> None:
    description = {**describe_embedding(), "model_name": model_name}
    if engine is not None:  # descriptions name the engine from Xinference 3.1 on
        description["model_engine"] = engine
    responses.get(DESCRIBE, json=description)


def model_with_prompts(*names: str):
    """A server whose model knows these prompt names: other names fail as the engine fails."""

    def callback(request):
        body = json.loads(request.body)
        asked = body.get("prompt_name")
        if asked is not None and asked not in names:
            detail = NO_SUCH_PROMPT.format(name=asked).replace("keys []", f"keys {list(names)!r}")
            return 500, {}, json.dumps({"detail": detail})
        data = [{"index": i, "object": "embedding", "embedding": [float(i), 1.0]} for i in range(len(body["input"]))]
        return 200, {}, json.dumps({"object": "list", "model": UID, "data": data, "usage": {"prompt_tokens": 3, "total_tokens": 3}})

    return callback


def embed(texts, input_type, **creds):
    return XinferenceTextEmbeddingModel(model_schemas=[]).invoke("e", credentials(**creds), texts, input_type=input_type)


def sent_fields() -> list[dict]:
    """The retrieval fields of every embeddings request, in order."""
    bodies = [json.loads(call.request.body) for call in responses.calls if call.request.method == "POST"]
    return [{key: body[key] for key in RETRIEVAL_FIELDS if key in body} for body in bodies]


# ---- what each kind of model is told -----------------------------------------------------------


@pytest.mark.parametrize(
    ("model_name", "query_fields", "document_fields"),
    [
        ("Qwen3-Embedding-0.6B", {"prompt_name": "query"}, {"prompt_name": "document"}),
        ("my-custom-embedder", {"prompt_name": "query"}, {"prompt_name": "document"}),
        ("jina-embeddings-v3", {"prompt_name": "retrieval.query"}, {"prompt_name": "retrieval.passage"}),
        ("jina-embeddings-v4", {"task": "retrieval", "prompt_name": "query"}, {"task": "retrieval", "prompt_name": "passage"}),
        ("jina-embeddings-v5-text-small", {"task": "query"}, {"task": "document"}),
        ("jina-embeddings-v5-omni-nano", {"task": "query"}, {"task": "document"}),
        # The server applies gte-Qwen2's query prompt itself; a prompt_name beside it would clash.
        ("gte-Qwen2", {}, {}),
    ],
)
@responses.activate
def test_each_model_kind_gets_its_own_query_and_document_fields(model_name, query_fields, document_fields):
    serve_describe(model_name)
    responses.add_callback(responses.POST, EMBEDDINGS, callback=model_with_prompts(
        "query", "document", "passage", "retrieval.query", "retrieval.passage"))

    embed(["what is xinference?"], QUERY)
    embed(["Xinference serves models."], DOCUMENT)

    assert sent_fields() == [query_fields, document_fields]


@pytest.mark.parametrize("engine", ["vllm", "llama.cpp", "flag", None])
@responses.activate
def test_other_engines_and_servers_before_3_1_get_nothing_new(engine):
    # vLLM and llama.cpp ignore extra fields, FlagEmbedding fails on them, and before 3.1
    # the description does not say which engine runs (None).
    serve_describe("Qwen3-Embedding-0.6B", engine=engine)
    responses.add_callback(responses.POST, EMBEDDINGS, callback=model_with_prompts())

    embed(["what is xinference?"], QUERY)
    embed(["Xinference serves models."], DOCUMENT)

    assert sent_fields() == [{}, {}]


@responses.activate
def test_inputs_with_images_carry_no_prompt():
    # The engine prepends a prompt to every input; an image is not text.
    serve_describe("jina-clip-v2")
    responses.add_callback(responses.POST, EMBEDDINGS, callback=model_with_prompts("query", "document"))
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    documents = [
        MultiModalContent(content="a cat", content_type=MultiModalContentType.TEXT),
        MultiModalContent(content=png, content_type=MultiModalContentType.IMAGE),
    ]
    XinferenceTextEmbeddingModel(model_schemas=[]).invoke_multimodal("e", credentials(), documents, input_type=QUERY)
    assert sent_fields() == [{}]


# ---- models without the prompt --------------------------------------------------------------------


@responses.activate
def test_a_model_without_prompts_is_asked_once_per_input_type_then_never_again():
    serve_describe("all-MiniLM-L6-v2")
    responses.add_callback(responses.POST, EMBEDDINGS, callback=model_with_prompts())

    for _ in range(3):
        assert embed(["what is xinference?"], QUERY).embeddings == [[0.0, 1.0]]
        assert embed(["Xinference serves models."], DOCUMENT).embeddings == [[0.0, 1.0]]

    assert sent_fields() == [
        {"prompt_name": "query"}, {},  # asked, told "not found", repeated without
        {"prompt_name": "document"}, {},
        {}, {}, {}, {},  # never asked again
    ]


@responses.activate
def test_a_model_with_only_a_query_prompt_keeps_it_for_queries():
    # e.g. snowflake-arctic-embed: a query instruction, documents as they are.
    serve_describe("snowflake-arctic-embed-m")
    responses.add_callback(responses.POST, EMBEDDINGS, callback=model_with_prompts("query"))

    embed(["d1"], DOCUMENT)
    embed(["q1"], QUERY)
    embed(["d2"], DOCUMENT)
    embed(["q2"], QUERY)

    assert sent_fields() == [{"prompt_name": "document"}, {}, {"prompt_name": "query"}, {}, {"prompt_name": "query"}]


@responses.activate
def test_jina_v4_without_the_prompt_keeps_its_task():
    # v4 fails without a task ("Task must be specified"): only the prompt goes.
    serve_describe("jina-embeddings-v4")
    responses.add_callback(responses.POST, EMBEDDINGS, callback=model_with_prompts())
    embed(["q"], QUERY)
    embed(["q"], QUERY)
    assert sent_fields() == [{"task": "retrieval", "prompt_name": "query"}, {"task": "retrieval"}, {"task": "retrieval"}]


@responses.activate
def test_what_is_learned_belongs_to_one_model_on_one_server():
    serve_describe("all-MiniLM-L6-v2")
    responses.add_callback(responses.POST, EMBEDDINGS, callback=model_with_prompts())
    embed(["q"], QUERY)

    other_uid = "qwen3-embedding"
    responses.get(f"{SERVER}/v1/models/{other_uid}", json={
        **describe_embedding(), "model_name": "Qwen3-Embedding-0.6B", "model_engine": "sentence_transformers"})
    embed(["q"], QUERY, model_uid=other_uid)

    assert sent_fields() == [{"prompt_name": "query"}, {}, {"prompt_name": "query"}, {}]
    assert json.loads(responses.calls[-2].request.body)["model"] == other_uid


@responses.activate
def test_concurrent_batches_of_the_first_call_all_succeed_and_it_is_learned_once(caplog):
    serve_describe("all-MiniLM-L6-v2")
    responses.add_callback(responses.POST, EMBEDDINGS, callback=model_with_prompts())
    texts = [f"text {i}" for i in range(8)]

    with caplog.at_level(logging.INFO, logger=retrieval.__name__):
        result = embed(texts, DOCUMENT, embedding_batch_size="2")

    assert len(result.embeddings) == 8
    assert (SERVER, UID, "all-MiniLM-L6-v2", "document") in retrieval._missing_prompts
    assert [record.getMessage() for record in caplog.records].count(
        f"Embedding model '{UID}' (all-MiniLM-L6-v2) has no 'document' prompt: "
        "those texts go without one from now on."
    ) == 1


@responses.activate
def test_learning_is_safe_from_many_threads():
    serve_describe("all-MiniLM-L6-v2")
    responses.add_callback(responses.POST, EMBEDDINGS, callback=model_with_prompts())
    errors = []

    def work():
        try:
            embed(["q"], QUERY)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert (SERVER, UID, "all-MiniLM-L6-v2", "query") in retrieval._missing_prompts
    embed(["q"], QUERY)
    assert sent_fields()[-1] == {}


@responses.activate
def test_a_missing_prompt_named_by_a_request_merged_with_ours_is_learned_and_ours_retried():
    # The server embeds requests that arrive together as one batch; one missing prompt
    # fails all of them with its name, not ours.
    serve_describe("snowflake-arctic-embed-m")
    responses.post(EMBEDDINGS, status=500, json={"detail": NO_SUCH_PROMPT.format(name="document")})
    responses.add_callback(responses.POST, EMBEDDINGS, callback=model_with_prompts("query"))

    assert embed(["q"], QUERY).embeddings == [[0.0, 1.0]]

    assert sent_fields() == [{"prompt_name": "query"}, {"prompt_name": "query"}]
    assert (SERVER, UID, "snowflake-arctic-embed-m", "document") in retrieval._missing_prompts
    assert (SERVER, UID, "snowflake-arctic-embed-m", "query") not in retrieval._missing_prompts


@responses.activate
def test_a_second_missing_prompt_error_reaches_dify_in_the_servers_words():
    serve_describe("all-MiniLM-L6-v2")
    responses.post(EMBEDDINGS, status=500, json={"detail": NO_SUCH_PROMPT.format(name="query")})
    responses.post(EMBEDDINGS, status=500, json={"detail": NO_SUCH_PROMPT.format(name="other")})
    with pytest.raises(InvokeServerUnavailableError, match="Prompt name 'other' not found"):
        embed(["q"], QUERY)
    assert len(sent_fields()) == 2


@responses.activate
def test_other_server_errors_are_not_retried():
    serve_describe("Qwen3-Embedding-0.6B")
    responses.post(EMBEDDINGS, status=500, json={"detail": "CUDA out of memory"})
    with pytest.raises(InvokeServerUnavailableError, match="CUDA out of memory"):
        embed(["q"], QUERY)
    assert sent_fields() == [{"prompt_name": "query"}]
    assert (SERVER, UID, "Qwen3-Embedding-0.6B", "query") not in retrieval._missing_prompts


@responses.activate
def test_the_prompt_in_use_is_logged_once_per_model_and_prompt(caplog):
    serve_describe("Qwen3-Embedding-0.6B")
    responses.add_callback(responses.POST, EMBEDDINGS, callback=model_with_prompts("query", "document"))

    with caplog.at_level(logging.INFO, logger=retrieval.__name__):
        for _ in range(3):
            embed(["q"], QUERY)
            embed(["d"], DOCUMENT)

    assert [record.getMessage() for record in caplog.records] == [
        f"Embedding model '{UID}' (Qwen3-Embedding-0.6B): texts are sent with prompt_name='query'.",
        f"Embedding model '{UID}' (Qwen3-Embedding-0.6B): texts are sent with prompt_name='document'.",
    ]
