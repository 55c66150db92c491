"""What an LLM's description implies for Dify: mode, context size, features, parameter rules."""

from dataclasses import dataclass

from dify_plugin.entities import I18nObject
from dify_plugin.entities.model import (
    AIModelEntity,
    ModelFeature,
    ModelPropertyKey,
    ModelType,
    ParameterRule,
    ParameterType,
)
from dify_plugin.entities.model.llm import LLMMode

from models.common.credentials import LLMSettings
from models.common.metadata import ModelDescription
from models.common.model_base import customizable_schema
from models.llm.families import reasoning_effort_of
from models.llm.refusals import server_refuses_tools

DEFAULT_CONTEXT_LENGTH = 2048


@dataclass(frozen=True)
class Capabilities:
    """What Dify may use this model for: the description, completed by the admin's settings."""

    mode: LLMMode
    context_length: int
    max_output_tokens: int
    tool_calling: bool
    vision: bool
    structured_output: bool


def capabilities_for(settings: LLMSettings, description: ModelDescription) -> Capabilities:
    """The model's capabilities: what the admin saved wins, then what the server described or refused."""
    mode = mode_of(description)
    chat = mode is LLMMode.CHAT
    context_length = settings.context_size or description.context_length or DEFAULT_CONTEXT_LENGTH
    tools_refused = server_refuses_tools(settings.base_url, description)
    return Capabilities(
        mode=mode,
        context_length=context_length,
        max_output_tokens=settings.max_output_tokens or context_length,
        tool_calling=chat and settings.tool_calling.decide(description.has("tools") and not tools_refused),
        vision=chat and settings.vision.decide(description.has("vision") or description.has("omni")),
        structured_output=chat and settings.structured_output.decide(True),
    )


def schema_of(model: str, description: ModelDescription, capabilities: Capabilities) -> AIModelEntity:
    return customizable_schema(
        model,
        ModelType.LLM,
        {
            ModelPropertyKey.MODE: capabilities.mode.value,
            ModelPropertyKey.CONTEXT_SIZE: capabilities.context_length,
        },
        features=_features_of(description, capabilities),
        parameter_rules=_parameter_rules(description, capabilities),
    )


def mode_of(description: ModelDescription) -> LLMMode:
    if description.has("generate") and not description.has("chat"):
        return LLMMode.COMPLETION
    return LLMMode.CHAT


def _features_of(description: ModelDescription, capabilities: Capabilities) -> list[ModelFeature]:
    if capabilities.mode is LLMMode.COMPLETION:
        return []
    features = []
    if capabilities.structured_output:
        features.append(ModelFeature.STRUCTURED_OUTPUT)
    if capabilities.tool_calling:
        features += [
            ModelFeature.TOOL_CALL,
            ModelFeature.MULTI_TOOL_CALL,
            ModelFeature.STREAM_TOOL_CALL,
            ModelFeature.AGENT_THOUGHT,
        ]
    if capabilities.vision:
        features.append(ModelFeature.VISION)
    if description.has("audio") or description.has("omni"):
        features.append(ModelFeature.AUDIO)
    if description.has("omni"):
        features.append(ModelFeature.VIDEO)
    return features


def _label(en_us: str, zh_hans: str) -> I18nObject:
    return I18nObject(en_US=en_us, zh_Hans=zh_hans)


def _parameter_rules(description: ModelDescription, capabilities: Capabilities) -> list[ParameterRule]:
    max_output_tokens = capabilities.max_output_tokens
    rules = [
        ParameterRule(name="temperature", use_template="temperature", max=2.0),
        ParameterRule(name="top_p", use_template="top_p"),
        ParameterRule(name="top_k", use_template="top_k", min=1, max=1000),
        ParameterRule(name="presence_penalty", use_template="presence_penalty", min=-2.0, max=2.0),
        ParameterRule(name="frequency_penalty", use_template="frequency_penalty", min=-2.0, max=2.0),
        ParameterRule(
            name="repetition_penalty",
            label=_label("Repetition Penalty", "重复惩罚"),
            help=_label(
                "Values above 1 discourage repeating tokens; 1 means no penalty.",
                "大于 1 的值会抑制重复；1 表示不惩罚。",
            ),
            type=ParameterType.FLOAT,
            min=0.1,
            max=2.0,
            default=1.0,
            precision=2,
        ),
        ParameterRule(
            name="max_tokens",
            use_template="max_tokens",
            min=1,
            max=max_output_tokens,
            default=min(512, max_output_tokens),
        ),
        ParameterRule(
            name="seed",
            label=_label("Seed", "随机种子"),
            help=_label(
                "The same seed and parameters give the same answer where the engine supports it.",
                "相同的种子和参数在引擎支持时产生相同的回答。",
            ),
            type=ParameterType.INT,
        ),
    ]
    if capabilities.structured_output:
        rules += [
            ParameterRule(
                name="response_format",
                label=_label("Response Format", "回复格式"),
                help=_label(
                    "json_object asks for JSON; json_schema for JSON matching the JSON schema below "
                    "(Xinference 1.1 and newer).",
                    "json_object 要求输出 JSON；json_schema 要求输出符合下方 JSON Schema 的 JSON（Xinference 1.1 及以上）。",
                ),
                type=ParameterType.STRING,
                options=["text", "json_object", "json_schema"],
            ),
            ParameterRule(name="json_schema", use_template="json_schema"),
        ]
    if description.has("hybrid"):
        rules.append(
            ParameterRule(
                name="enable_thinking",
                label=_label("Thinking Mode", "思考模式"),
                help=_label(
                    "Whether this hybrid reasoning model thinks before it answers.",
                    "该混合推理模型是否在回答前进行思考。",
                ),
                type=ParameterType.BOOLEAN,
                default=True,
            )
        )
    effort = reasoning_effort_of(description)
    if effort:
        rules.append(
            ParameterRule(
                name="reasoning_effort",
                label=_label("Reasoning Effort", "推理强度"),
                help=_label(
                    f"How much this model reasons before it answers; empty means its default ({effort.default}).",
                    f"该模型回答前推理的程度；留空则使用默认值（{effort.default}）。",
                ),
                type=ParameterType.STRING,
                options=list(effort.options),
            )
        )
    return rules

