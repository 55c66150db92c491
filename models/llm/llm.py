"""LLMs served by Xinference: chat (`/v1/chat/completions`) and generate (`/v1/completions`)."""

from collections.abc import Generator

from dify_plugin import LargeLanguageModel
from dify_plugin.entities.model import AIModelEntity
from dify_plugin.entities.model.llm import LLMMode, LLMResult, LLMResultChunk
from dify_plugin.entities.model.message import PromptMessage, PromptMessageTool

from models.common.credentials import ServerSettings
from models.common.http import XinferenceClient
from models.common.metadata import ModelDescription
from models.common.model_base import XinferenceModel
from models.common.wire import CompletionAnswer, parse_wire
from models.llm.answers import AnswerReader
from models.llm.request import (
    chat_message,
    completion_prompt,
    estimate_prompt_tokens,
    sampling_fields,
    tool_definition,
)
from models.llm.schema import mode_of, schema_of
from models.llm.tool_stream import streamed_answer


class XinferenceLargeLanguageModel(XinferenceModel, LargeLanguageModel):
    xinference_model_type = "llm"
    dify_type_name = "LLM"

    def _invoke(
        self,
        model: str,
        credentials: dict,
        prompt_messages: list[PromptMessage],
        model_parameters: dict,
        tools: list[PromptMessageTool] | None = None,
        stop: list[str] | None = None,
        stream: bool = True,
        user: str | None = None,
    ) -> LLMResult | Generator[LLMResultChunk, None, None]:
        settings = self.settings_of(credentials)
        description = self.describe_checked(settings)
        client = XinferenceClient(settings)
        chat = mode_of(description) is LLMMode.CHAT
        if chat:
            path = "/v1/chat/completions"
            body = {"model": settings.model_uid, "messages": [chat_message(m) for m in prompt_messages]}
            if tools:
                body["tools"] = [tool_definition(tool) for tool in tools]
        else:
            path = "/v1/completions"
            body = {"model": settings.model_uid, "prompt": completion_prompt(prompt_messages)}
        body.update(sampling_fields(model_parameters, description, chat))
        if stop:
            body["stop"] = stop

        call = AnswerReader(self, model, credentials, prompt_messages, tools)
        if not stream:
            return call.result(parse_wire(CompletionAnswer, client.post_json(path, body)))
        body["stream"] = True
        if chat:
            body["stream_options"] = {"include_usage": True}
        return streamed_answer(client, path, body, call)

    def get_num_tokens(
        self,
        model: str,
        credentials: dict,
        prompt_messages: list[PromptMessage],
        tools: list[PromptMessageTool] | None = None,
    ) -> int:
        return estimate_prompt_tokens(prompt_messages, tools)

    def validate_credentials(self, model: str, credentials: dict) -> None:
        self.validate_with_probe(credentials, _probe_with_tiny_request)

    def get_customizable_model_schema(self, model: str, credentials: dict) -> AIModelEntity:
        description = self.describe_checked(self.settings_of(credentials))
        # The SDK asks for the schema three times per invoke (parameter check, prompt and
        # completion price); the SDK's in-place template filling is idempotent.
        return description.derived(("llm-schema", model), lambda: schema_of(model, description))

    # `_invoke_error_mapping` and `_transform_invoke_error` come from XinferenceModel:
    # one table for every model type (models/common/errors.py).


def _probe_with_tiny_request(settings: ServerSettings, description: ModelDescription) -> None:
    client = XinferenceClient(settings)
    if mode_of(description) is LLMMode.CHAT:
        answer = client.post_json(
            "/v1/chat/completions",
            {"model": settings.model_uid, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5},
        )
    else:
        answer = client.post_json(
            "/v1/completions", {"model": settings.model_uid, "prompt": "Hi", "max_tokens": 5}
        )
    parse_wire(CompletionAnswer, answer)
