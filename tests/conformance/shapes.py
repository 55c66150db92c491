"""The conversations Dify sends to a chat model, as Dify's prompt messages.

Every message's text carries a marker so the rendered prompt can be searched for it;
`REASON-` marks earlier reasoning, which should not reach the prompt unless the
template itself renders it from the reasoning field.
"""

from dataclasses import dataclass, field

from dify_plugin.entities.model import ModelFeature
from dify_plugin.entities.model.message import (
    AssistantPromptMessage,
    DeveloperPromptMessage,
    ImagePromptMessageContent,
    PromptMessage,
    PromptMessageTool,
    SystemPromptMessage,
    TextPromptMessageContent,
    ToolPromptMessage,
    UserPromptMessage,
)

# A 1×1 PNG, as Dify inlines an uploaded picture.
PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

WEATHER = PromptMessageTool(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = PromptMessageTool(
    name="get_time",
    description="Current local time for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)

SYSTEM = SystemPromptMessage(content="You are a concise assistant. MARK-S1")
CJK = "请用中文回答。" + "长文本测试，包含中文、日本語のテキスト、한국어 텍스트。" * 60 + " MARK-CJK"


@dataclass(frozen=True)
class Shape:
    name: str
    messages: list[PromptMessage]
    tools: list[PromptMessageTool] = field(default_factory=list)
    needs: ModelFeature | None = None  # Dify sends this shape only to models with the feature
    parameters: str | None = None  # which family-aware parameters to set (see run.py)


def _call(call_id: str, name: str, arguments: str) -> AssistantPromptMessage.ToolCall:
    return AssistantPromptMessage.ToolCall(
        id=call_id,
        type="function",
        function=AssistantPromptMessage.ToolCall.ToolCallFunction(name=name, arguments=arguments),
    )


SHAPES = [
    Shape("system+user", [SYSTEM, UserPromptMessage(content="Capital of France? MARK-U1")]),
    Shape(
        "think history",
        [
            SYSTEM,
            UserPromptMessage(content="Capital of France? MARK-U1"),
            AssistantPromptMessage(content="<think>\nREASON-OLD the user asks about France.\n</think>\n\nParis. MARK-A1"),
            UserPromptMessage(content="And of Germany? MARK-U2"),
        ],
    ),
    Shape(
        "tool result",
        [
            SYSTEM,
            UserPromptMessage(content="Weather in Paris? MARK-U1"),
            AssistantPromptMessage(content="", tool_calls=[_call("call_1", "get_weather", '{"city": "Paris"}')]),
            ToolPromptMessage(content="Sunny, 21 C. MARK-T1", tool_call_id="call_1", name="get_weather"),
        ],
        tools=[WEATHER],
        needs=ModelFeature.TOOL_CALL,
    ),
    Shape(
        "parallel tools",
        [
            SYSTEM,
            UserPromptMessage(content="Weather and time in Paris? MARK-U1"),
            AssistantPromptMessage(
                content="",
                tool_calls=[
                    _call("call_1", "get_weather", '{"city": "Paris"}'),
                    _call("call_2", "get_time", '{"city": "Paris"}'),
                ],
            ),
            ToolPromptMessage(content="Sunny, 21 C. MARK-T1", tool_call_id="call_1", name="get_weather"),
            ToolPromptMessage(content="14:05. MARK-T2", tool_call_id="call_2", name="get_time"),
        ],
        tools=[WEATHER, TIME],
        needs=ModelFeature.MULTI_TOOL_CALL,
    ),
    Shape(
        "late system",
        [
            SYSTEM,
            UserPromptMessage(content="Capital of France? MARK-U1"),
            AssistantPromptMessage(content="Paris. MARK-A1"),
            SystemPromptMessage(content="From now on answer in one word. MARK-S2"),
            UserPromptMessage(content="And of Germany? MARK-U2"),
        ],
    ),
    Shape(
        "developer",
        [
            DeveloperPromptMessage(content="Answer formally. MARK-D1"),
            UserPromptMessage(content="Capital of France? MARK-U1"),
        ],
    ),
    Shape(
        "image",
        [
            UserPromptMessage(
                content=[
                    TextPromptMessageContent(data="What is in this picture? MARK-U1"),
                    ImagePromptMessageContent(format="png", base64_data=PIXEL_PNG, mime_type="image/png"),
                ]
            )
        ],
        needs=ModelFeature.VISION,
    ),
    Shape(
        "empty assistant",
        [
            UserPromptMessage(content="Hello MARK-U1"),
            AssistantPromptMessage(content=""),
            UserPromptMessage(content="Are you there? MARK-U2"),
        ],
    ),
    Shape("long CJK", [SystemPromptMessage(content="你是一个助手。MARK-S1"), UserPromptMessage(content=CJK)]),
    Shape(
        "thinking params",
        [SYSTEM, UserPromptMessage(content="Capital of France? MARK-U1")],
        parameters="family",
    ),
]
