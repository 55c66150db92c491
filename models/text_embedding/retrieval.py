"""Query or document: the request field that tells an asymmetric model which one it embeds.

Xinference passes unknown fields of `/v1/embeddings` to the engine. The
sentence-transformers engine hands them to its `encode`, where `prompt_name` picks one of
the prompts in the model's sentence-transformers config (`config_sentence_transformers.json`,
e.g. Qwen3-Embedding's query instruction), and Jina models take a task
(`xinference/model/embedding/sentence_transformers/core.py`, recognised by the model name,
as the server does):

| model (name as the server sees it) | QUERY                                  | DOCUMENT                                 |
| ---------------------------------- | -------------------------------------- | ---------------------------------------- |
| jina-embeddings-v3                 | prompt_name `retrieval.query`          | prompt_name `retrieval.passage`          |
| jina-embeddings-v4                 | task `retrieval`, prompt_name `query`  | task `retrieval`, prompt_name `passage`  |
| jina-embeddings-v5                 | task `query`                           | task `document`                          |
| gte-Qwen2 (the server always applies its query prompt itself) | nothing | nothing                          |
| any other model                    | prompt_name `query`                    | prompt_name `document`                   |

Only for the sentence-transformers engine, which the description names from Xinference 3.1
on: other engines ignore the fields (vLLM, llama.cpp) or fail on them (FlagEmbedding), and
older descriptions do not say which engine runs. Images carry no prompt.

sentence-transformers 5 (Xinference 4.x) gives every model empty `query` and `document`
prompts when its config names none, so there they always exist. Where a prompt is missing
(older sentence-transformers, or Jina's prompt names on a model without them) the server
answers "Prompt name 'query' not found in the configured prompts dictionary"
(`Reason.MISSING_PROMPT`): that is learned per model, as long as what the plugin learns
(models/common/memory.py), and the call is repeated without it. Models without prompts
of their own embed exactly as before.
"""

import logging

from dify_plugin.config.logger_format import plugin_logger_handler
from dify_plugin.entities.model import EmbeddingInputType

from models.common.credentials import ServerSettings
from models.common.errors import Reason, XinferenceError
from models.common.memory import Memory
from models.common.metadata import ModelDescription
from models.common.redaction import redact

_ENGINE = "sentence_transformers"

_logger = logging.getLogger(__name__)
_logger.setLevel(logging.INFO)
_logger.addHandler(plugin_logger_handler)  # the SDK's: log lines reach the daemon's log

_Prompt = tuple[str, str, str, str]  # (server URL, model UID, model name, prompt name)
# Prompts the model turned out not to have.
_missing_prompts: Memory[_Prompt, bool] = Memory()
# Prompts already reported as in use (logged once per lifetime).
_prompts_reported: Memory[_Prompt, bool] = Memory()


def retrieval_fields(
    settings: ServerSettings,
    description: ModelDescription,
    input_type: EmbeddingInputType,
    all_text: bool = True,
) -> dict[str, str]:
    """What to add to an embeddings request for this input type; {} when nothing applies."""
    if not all_text or (description.model_engine or "").lower() != _ENGINE:
        return {}
    fields = _fields_by_name(description.model_name or "", input_type == EmbeddingInputType.QUERY)
    prompt = fields.get("prompt_name")
    if prompt is not None and _key(settings, description, prompt) in _missing_prompts:
        del fields["prompt_name"]
    return fields


def learn_missing_prompt(
    settings: ServerSettings, description: ModelDescription, fields: dict[str, str], error: XinferenceError
) -> bool:
    """Whether a request with `fields` failed for a missing prompt, and is worth one more try.

    The prompt the server names is remembered as missing. It may not be the one this
    request asked for: the server embeds requests that arrive together as one batch, and
    one missing prompt fails them all.
    """
    if error.reason is not Reason.MISSING_PROMPT or error.prompt_name is None or "prompt_name" not in fields:
        return False
    if _missing_prompts.add(_key(settings, description, error.prompt_name), True):
        _log(settings, f"Embedding model '{settings.model_uid}' ({description.model_name}) has no "
                       f"'{error.prompt_name}' prompt: those texts go without one from now on.")  # fmt: skip
    return True


def report_prompt_in_use(settings: ServerSettings, description: ModelDescription, fields: dict[str, str]) -> None:
    """Logs once per model and prompt that the model's own prompt is being applied."""
    prompt = fields.get("prompt_name") or fields.get("task")
    if prompt is None:
        return
    if not _prompts_reported.add(_key(settings, description, prompt), True):
        return
    sent_with = ", ".join(f"{name}={value!r}" for name, value in fields.items())
    _log(settings, f"Embedding model '{settings.model_uid}' ({description.model_name}): texts are sent with {sent_with}.")


def _fields_by_name(model_name: str, query: bool) -> dict[str, str]:
    name = model_name.lower()
    if "gte" in name and "qwen2" in name:
        return {}
    if "jina-embeddings-v3" in name:
        return {"prompt_name": "retrieval.query" if query else "retrieval.passage"}
    if "jina-embeddings-v4" in name:
        return {"task": "retrieval", "prompt_name": "query" if query else "passage"}
    if "jina-embeddings-v5" in name:
        return {"task": "query" if query else "document"}
    return {"prompt_name": "query" if query else "document"}


def _log(settings: ServerSettings, line: str) -> None:
    # An API key pasted into the UID field too stays out of the log.
    _logger.info("%s", redact(line, settings.api_key))


def _key(settings: ServerSettings, description: ModelDescription, prompt: str) -> _Prompt:
    return (settings.base_url, settings.model_uid, description.model_name or "", prompt)
