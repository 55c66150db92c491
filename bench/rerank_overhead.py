"""Where a rerank's time goes beside the server's: 100 documents, direct vs plugin vs runtime.

- direct / direct+QUICKACK: a pooled session sending the body and parsing the answer.
- plugin: the SDK entry point in this process (`XinferenceRerankModel(...).invoke`).
- runtime: the same call through `python -m main` over stdio, as the daemon drives it.
- "plugin without HTTP": the plugin's own work on a canned answer (`_post_rerank` is not
  called), i.e. settings, the cached description, parsing, ordering, the SDK's result.
"""

import time
from collections.abc import Callable
from unittest import mock

from bench.cases import Server, Settings, _timed, direct_json
from bench.measure import Row, interleave, rows_from
from bench.stdio_client import invoke_rerank_request
from models.common.wire import RerankAnswer, parse_wire
from models.rerank import rerank as rerank_module
from models.rerank.rerank import XinferenceRerankModel

DOCUMENTS = 100
QUERY = "Which document talks about the weather in Paris?"


def rerank_100(settings: Settings, server: Server) -> list[Row]:
    uid = server.uids["rerank"]
    docs = [f"Document {i}: some text about subject {i % 13}, city {i % 7} and weather." for i in range(DOCUMENTS)]
    credentials = server.credentials("rerank")
    body = {"model": uid, "query": QUERY, "documents": docs, "return_documents": False}
    canned = parse_wire(RerankAnswer, direct_json(server, "/v1/rerank", body)).results

    def plugin() -> dict:
        start = time.perf_counter()
        result = XinferenceRerankModel(model_schemas=[]).invoke(uid, credentials, QUERY, docs)
        elapsed = time.perf_counter() - start
        if len(result.docs) != DOCUMENTS:
            raise RuntimeError(f"the plugin returned {len(result.docs)} results for {DOCUMENTS} documents")
        return {"total": elapsed}

    def plugin_without_http() -> dict:
        with mock.patch.object(rerank_module, "_post_rerank", lambda *args: sorted(
                canned, key=lambda item: item.relevance_score, reverse=True)):
            return plugin()

    variants: dict[str, Callable[[], dict]] = {
        "direct": lambda: _timed(lambda: direct_json(server, "/v1/rerank", body)),
        "direct_quickack": lambda: _timed(lambda: direct_json(server, "/v1/rerank", body, server.quickack_session)),
        "plugin": plugin,
        "plugin_local": plugin_without_http,
    }
    if settings.runtime:
        request = invoke_rerank_request(credentials, uid, QUERY, docs)
        variants["runtime"] = lambda: _timed(lambda: settings.runtime.call(request))
    iterations = settings.n(200, 10) if server.is_stub else settings.n(60, 5)
    samples = interleave(variants, iterations, warmup=settings.n(5, 2))
    case = f"rerank {DOCUMENTS} documents"
    total = rows_from(samples, case, server.name, "total", target="≤ +1 ms (runtime)")
    if total.runtime is not None:
        total.met = total.runtime - total.direct <= 0.001
        total.note = f"runtime added {(total.runtime - total.direct) * 1e3:+.2f} ms"
    versus_quickack = rows_from({"direct": samples["direct_quickack"], "plugin": samples["plugin"],
                                 "runtime": samples.get("runtime", {})},
                                case, server.name, "total", label="total vs direct+QUICKACK")
    local = rows_from({"plugin": samples["plugin_local"]}, case, server.name, "total",
                      label="plugin without HTTP", note="settings, cached description, parsing, order, SDK result")
    return [total, versus_quickack, local]
