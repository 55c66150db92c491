"""Text embedding models as Dify drives them, against Xinference answers in the contract's shapes."""

import base64
import json
import threading

import pytest
import responses
from dify_plugin.core.server.stdio.response_writer import StdioResponseWriter
from dify_plugin.entities.model import EmbeddingInputType, ModelFeature, ModelPropertyKey
from dify_plugin.entities.model.text_embedding import MultiModalContent, MultiModalContentType, TextEmbeddingResult
from dify_plugin.errors.model import (
    CredentialsValidateFailedError,
    InvokeBadRequestError,
    InvokeServerUnavailableError,
)

from models.common.tokens import estimate_tokens
from models.text_embedding.limits import DAEMON_LINE_LIMIT, DEFAULT_DIMENSIONS, LINE_BUDGET
from models.text_embedding.text_embedding import (
    CLIENT_CUT_SHARE,
    CONCURRENT_BATCHES,
    XinferenceTextEmbeddingModel,
)
from tests.unit.xinference import SERVER, UID, credentials, describe_embedding

DESCRIBE = f"{SERVER}/v1/models/{UID}"
EMBEDDINGS = f"{SERVER}/v1/embeddings"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()


def embedder() -> XinferenceTextEmbeddingModel:
    return XinferenceTextEmbeddingModel(model_schemas=[])


def serve_describe(since_3_1=True, **changes) -> None:
    """An embedding description; from Xinference 3.1 on it names the engine."""
    description = {**describe_embedding(), **changes}
    if since_3_1:
        description.setdefault("model_engine", "sentence_transformers")
    responses.get(DESCRIBE, json=description)


def vector_of(text) -> list[float]:
    """A vector that tells which input it belongs to."""
    return [float(len(json.dumps(text))), float(sum(map(ord, json.dumps(text))) % 997)]


def answer_each_input(reverse=True, prompt_tokens=7):
    """Answers every request with one vector per input, `data` out of order unless told otherwise."""

    def callback(request):
        inputs = json.loads(request.body)["input"]
        data = [{"index": i, "object": "embedding", "embedding": vector_of(item)} for i, item in enumerate(inputs)]
        body = {
            "object": "list",
            "model": UID,
            "data": data[::-1] if reverse else data,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
        return 200, {}, json.dumps(body)

    return callback


def embed(texts, creds=None, input_type=EmbeddingInputType.DOCUMENT):
    return embedder().invoke("my-embedder", creds or credentials(), texts, input_type=input_type)


def posted_inputs() -> list:
    return [json.loads(call.request.body)["input"] for call in responses.calls if call.request.method == "POST"]


# ---- schema ------------------------------------------------------------------------------


@responses.activate
def test_schema_takes_context_size_from_max_tokens_and_batch_size_from_the_form():
    serve_describe(max_tokens=8192)
    schema = embedder().get_customizable_model_schema("my-embedder", credentials(embedding_batch_size="8"))
    assert schema.model_properties[ModelPropertyKey.CONTEXT_SIZE] == 8192
    # Dify hands over up to this many texts per call: room for the concurrent batches.
    assert schema.model_properties[ModelPropertyKey.MAX_CHUNKS] == 8 * CONCURRENT_BATCHES
    assert ModelFeature.VISION not in (schema.features or [])


@responses.activate
def test_schema_defaults_without_max_tokens_or_batch_size():
    serve_describe(max_tokens=None, dimensions=32)
    schema = embedder().get_customizable_model_schema("my-embedder", credentials())
    assert schema.model_properties[ModelPropertyKey.CONTEXT_SIZE] == 512
    assert schema.model_properties[ModelPropertyKey.MAX_CHUNKS] == 256 * CONCURRENT_BATCHES


@pytest.mark.parametrize("dimensions", [384, 1024, 4096, None])
@responses.activate
def test_max_chunks_keeps_the_answer_line_under_the_daemons_limit(dimensions):
    # The whole answer goes to the daemon as one stdout line; a longer one than it
    # buffers kills the plugin. Widest values, as the SDK writes them.
    serve_describe(dimensions=dimensions)
    schema = embedder().get_customizable_model_schema("my-embedder", credentials())
    texts = schema.model_properties[ModelPropertyKey.MAX_CHUNKS]
    widest = float("%.9g" % -6.43844481e15)
    result = TextEmbeddingResult(
        model="my-embedder",
        embeddings=[[widest] * (dimensions or DEFAULT_DIMENSIONS)] * texts,
        usage=embedder()._usage(10**9),
    )
    line = StdioResponseWriter().session_message_text("0" * 36, result)
    # Well under: within the 4 MiB budget but for the envelope, a MiB below the limit.
    assert len(line.encode()) < LINE_BUDGET + 64 * 1024 < DAEMON_LINE_LIMIT
    assert texts > 0


@responses.activate
def test_models_that_embed_images_declare_vision():
    serve_describe(model_ability=["embed", "embed_vision"])
    schema = embedder().get_customizable_model_schema("my-embedder", credentials())
    assert ModelFeature.VISION in schema.features


# ---- batches, order, concurrency -------------------------------------------------------------


@responses.activate
def test_texts_go_in_batches_and_vectors_come_back_in_input_order():
    serve_describe()
    responses.add_callback(responses.POST, EMBEDDINGS, callback=answer_each_input(reverse=True))
    texts = [f"text number {i}" for i in range(7)]

    result = embed(texts, credentials(embedding_batch_size="3"))

    assert result.embeddings == [vector_of(text) for text in texts]
    assert sorted(map(len, posted_inputs())) == [1, 3, 3]
    assert sorted(text for batch in posted_inputs() for text in batch) == sorted(texts)


@responses.activate
def test_batches_are_sent_concurrently_but_no_more_than_the_bound_at_once():
    serve_describe()
    # The first CONCURRENT_BATCHES requests are answered only once all of them are in flight:
    # sent one after the other, the first would wait for the others in vain (BrokenBarrierError).
    all_in_flight = threading.Barrier(CONCURRENT_BATCHES, timeout=10)
    lock = threading.Lock()
    arrived, in_flight, most_in_flight = [0], [0], [0]
    answer = answer_each_input()

    def answer_when_the_first_wave_is_in(request):
        with lock:
            arrived[0] += 1
            first_wave = arrived[0] <= CONCURRENT_BATCHES
            in_flight[0] += 1
            most_in_flight[0] = max(most_in_flight[0], in_flight[0])
        if first_wave:
            all_in_flight.wait()
        with lock:
            in_flight[0] -= 1
        return answer(request)

    responses.add_callback(responses.POST, EMBEDDINGS, callback=answer_when_the_first_wave_is_in)
    texts = [f"t{i}" for i in range(16)]

    result = embed(texts, credentials(embedding_batch_size="2"))

    assert result.embeddings == [vector_of(text) for text in texts]
    assert arrived[0] == 8
    assert most_in_flight[0] == CONCURRENT_BATCHES > 1


@responses.activate
def test_one_failed_batch_fails_the_whole_call_with_its_error():
    serve_describe()
    answer = answer_each_input()

    def second_batch_fails(request):
        if "t2" in json.loads(request.body)["input"]:
            return 500, {"Content-Type": "text/plain"}, "Internal Server Error: CUDA out of memory"
        return answer(request)

    responses.add_callback(responses.POST, EMBEDDINGS, callback=second_batch_fails)
    with pytest.raises(InvokeServerUnavailableError, match="CUDA out of memory"):
        embed([f"t{i}" for i in range(6)], credentials(embedding_batch_size="2"))


@responses.activate
def test_an_answer_with_the_wrong_number_of_vectors_is_a_server_error():
    serve_describe()
    responses.post(
        EMBEDDINGS,
        json={"object": "list", "model": UID, "data": [{"index": 0, "object": "embedding", "embedding": [0.1]}]},
    )
    with pytest.raises(InvokeServerUnavailableError, match="1 embeddings .* for 2 inputs"):
        embed(["a", "b"])


@responses.activate
def test_indices_numbered_on_across_requests_still_give_the_vectors_in_order():
    # Xinference 1.17.1, several batches at once: the second request's vectors came as 3, 4, 5.
    serve_describe()

    def numbered_from_three(request):
        inputs = json.loads(request.body)["input"]
        data = [{"index": 3 + i, "object": "embedding", "embedding": vector_of(item)} for i, item in enumerate(inputs)]
        return 200, {}, json.dumps({"object": "list", "model": UID, "data": data[::-1]})

    responses.add_callback(responses.POST, EMBEDDINGS, callback=numbered_from_three)
    assert embed(["a", "b", "c"]).embeddings == [vector_of("a"), vector_of("b"), vector_of("c")]


@responses.activate
def test_no_texts_gives_no_vectors():
    serve_describe()
    assert embed([]).embeddings == []
    assert posted_inputs() == []


# ---- truncation -----------------------------------------------------------------------------


@responses.activate
def test_servers_since_3_1_truncate_long_texts_themselves():
    serve_describe(since_3_1=True, max_tokens=64)
    responses.add_callback(responses.POST, EMBEDDINGS, callback=answer_each_input())
    long_text = "word " * 2000

    result = embed([long_text])

    body = json.loads(responses.calls[-1].request.body)
    assert body["truncate_prompt_tokens"] == -1
    assert body["input"] == [long_text]
    assert len(result.embeddings) == 1


@responses.activate
def test_older_servers_get_long_texts_cut_conservatively_and_short_ones_untouched():
    serve_describe(since_3_1=False, max_tokens=64)
    responses.add_callback(responses.POST, EMBEDDINGS, callback=answer_each_input())
    long_text = "internationalization of everything, " * 500
    short_text = "a short text"

    result = embed([long_text, short_text])

    body = json.loads(responses.calls[-1].request.body)
    assert "truncate_prompt_tokens" not in body
    sent_long, sent_short = body["input"]
    assert long_text.startswith(sent_long)
    assert 0.5 * 64 <= estimate_tokens(sent_long) <= CLIENT_CUT_SHARE * 64
    assert sent_short == short_text
    assert len(result.embeddings) == 2


@responses.activate
def test_cut_cjk_text_also_fits():
    serve_describe(since_3_1=False, max_tokens=100)
    responses.add_callback(responses.POST, EMBEDDINGS, callback=answer_each_input())
    embed(["这是一个很长的中文句子。" * 100])
    sent = posted_inputs()[-1][0]
    assert estimate_tokens(sent) <= CLIENT_CUT_SHARE * 100 and len(sent) >= 60


# ---- usage and token counts ---------------------------------------------------------------------


@responses.activate
def test_usage_is_the_servers_count_summed_over_batches():
    serve_describe()
    responses.add_callback(responses.POST, EMBEDDINGS, callback=answer_each_input(prompt_tokens=7))
    usage = embed(["a", "b", "c"], credentials(embedding_batch_size="2")).usage
    assert (usage.tokens, usage.total_tokens) == (14, 14)
    assert usage.total_price == 0 and usage.latency >= 0


@responses.activate
def test_usage_of_minus_one_falls_back_to_the_offline_estimate():
    serve_describe()
    responses.add_callback(responses.POST, EMBEDDINGS, callback=answer_each_input(prompt_tokens=-1))
    texts = ["Hello world, this is a test.", "另一个文本"]
    usage = embed(texts).usage
    assert usage.tokens == sum(estimate_tokens(text) for text in texts) > 0


@responses.activate
def test_num_tokens_are_per_text_and_offline():
    counts = embedder().get_num_tokens("my-embedder", credentials(), ["", "Hello world", "Hello " * 100])
    assert counts[0] == 0 < counts[1] < counts[2]
    assert len(responses.calls) == 0


@responses.activate
def test_servers_before_3_1_get_no_field_they_might_pass_to_an_engine_that_fails_on_it():
    # `encoding_format` is the one exception: every version drops it before the engine.
    serve_describe(since_3_1=False)
    responses.add_callback(responses.POST, EMBEDDINGS, callback=answer_each_input())
    embed(["what is xinference?"], input_type=EmbeddingInputType.QUERY)
    assert json.loads(responses.calls[-1].request.body) == {
        "model": UID, "input": ["what is xinference?"], "encoding_format": "base64"}


# ---- images ------------------------------------------------------------------------------------------


@responses.activate
def test_images_are_sent_as_data_urls_next_to_text_items():
    serve_describe(model_ability=["embed", "embed_vision"])
    responses.add_callback(responses.POST, EMBEDDINGS, callback=answer_each_input())
    documents = [
        MultiModalContent(content="a cat", content_type=MultiModalContentType.TEXT),
        MultiModalContent(content=PNG, content_type=MultiModalContentType.IMAGE),
    ]

    result = embedder().invoke_multimodal("my-embedder", credentials(), documents)

    expected_inputs = [{"text": "a cat"}, {"image": f"data:image/png;base64,{PNG}"}]
    assert posted_inputs() == [expected_inputs]
    assert result.embeddings == [vector_of(item) for item in expected_inputs]


@responses.activate
def test_multimodal_call_with_only_text_sends_plain_strings():
    serve_describe()
    responses.add_callback(responses.POST, EMBEDDINGS, callback=answer_each_input())
    documents = [MultiModalContent(content="a cat", content_type=MultiModalContentType.TEXT)]
    embedder().invoke_multimodal("my-embedder", credentials(), documents)
    assert posted_inputs() == [["a cat"]]


# ---- errors --------------------------------------------------------------------------------------------


@responses.activate
def test_bad_batch_size_is_a_bad_request_naming_the_field():
    serve_describe()
    with pytest.raises(InvokeBadRequestError, match="embedding_batch_size must be a whole number, at least 1"):
        embed(["hello"], credentials(embedding_batch_size="0"))


# ---- validation ----------------------------------------------------------------------------------------


@responses.activate
def test_validation_describes_then_embeds_one_short_text():
    serve_describe()
    responses.add_callback(responses.POST, EMBEDDINGS, callback=answer_each_input())
    embedder().validate_credentials("my-embedder", credentials())
    assert [call.request.method for call in responses.calls] == ["GET", "POST"]
    assert len(posted_inputs()[0]) == 1


@responses.activate
def test_validation_names_a_bad_batch_size_before_calling_the_server():
    with pytest.raises(CredentialsValidateFailedError, match="embedding_batch_size"):
        embedder().validate_credentials("my-embedder", credentials(embedding_batch_size="many"))
    assert len(responses.calls) == 0
