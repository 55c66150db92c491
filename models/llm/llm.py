"""LLMs served by Xinference: chat (`/v1/chat/completions`) and generate (`/v1/completions`)."""

from collections.abc import Generator
from typing import Any

from dify_plugin import LargeLanguageModel
from dify_plugin.entities.model import AIModelEntity
from dify_plugin.entities.model.llm import LLMMode, LLMResult, LLMResultChunk
from dify_plugin.entities.model.message import PromptMessage, PromptMessageTool

from models.common.credentials import LLMSettings
from models.common.http import XinferenceClient
from models.common.model_base import XinferenceModel
from models.common.wire import CompletionAnswer, ModelDescription, parse_wire
from models.llm.answers import AnswerReader
from models.llm.families import template_needs
from models.llm.refusals import send_without_refused_tools
from models.llm.request import (
    chat_messages,
    completion_prompt,
    estimate_prompt_tokens,
    sampling_fields,
    tool_definition,
)
from models.llm.schema import capabilities_for, mode_of, schema_of
from models.llm.tool_stream import streamed_answer


class XinferenceLargeLanguageModel(XinferenceModel[LLMSettings], LargeLanguageModel):
    settings_type = LLMSettings
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
        settings, description = self.prepare(credentials)
        capabilities = capabilities_for(settings, description)
        client = XinferenceClient(settings)
        chat = capabilities.mode is LLMMode.CHAT
        if chat:
            path = "/v1/chat/completions"
            messages = chat_messages(
                prompt_messages, template_needs(description), tools_as_text=not capabilities.tool_calling
            )
            body: dict[str, Any] = {"model": settings.model_uid, "messages": messages}
            if tools and capabilities.tool_calling:
                body["tools"] = [tool_definition(tool) for tool in tools]
        else:
            path = "/v1/completions"
            body = {"model": settings.model_uid, "prompt": completion_prompt(prompt_messages)}
        body.update(sampling_fields(model_parameters, description, chat))
        if stop:
            body["stop"] = stop

        call = AnswerReader(self, model, credentials, prompt_messages, tools)
        server = settings.base_url
        if not stream:
            answer = send_without_refused_tools(lambda sent: client.post_json(path, sent), body, server, description)
            return call.result(parse_wire(CompletionAnswer, answer))
        body["stream"] = True
        if chat:
            body["stream_options"] = {"include_usage": True}
        return self.dify_errors_of(
            send_without_refused_tools(lambda sent: streamed_answer(client, path, sent, call), body, server, description)
        )

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
        settings, description = self.prepare(credentials)
        capabilities = capabilities_for(settings, description)
        # The SDK asks for the schema three times per invoke (parameter check, prompt and
        # completion price); the SDK's in-place template filling is idempotent.
        return description.derived(
            ("llm-schema", model, capabilities), lambda: schema_of(model, description, capabilities)
        )

    # `_invoke_error_mapping` and `_transform_invoke_error` come from XinferenceModel:
    # one table for every model type (models/common/errors.py).


def _probe_with_tiny_request(settings: LLMSettings, description: ModelDescription) -> None:
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
