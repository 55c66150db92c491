"""Family × shape pairs no client can fix, or this tier cannot check, each with its reason.

The reasons are written to be reported upstream. The tier fails when a pair listed here
passes again (the entry is stale) or when a pair not listed here fails.
"""

_SINGLE_TOOL_CALL = (
    "template limitation: Llama 3.1's template raises 'This model only supports single tool-calls "
    "at once!' for an assistant turn with two calls; the model itself emits one call per turn, so "
    "Dify only holds such a turn when another model made it"
)
_OWN_MULTIMODAL_CLASS = (
    "not checkable here: the server builds this family's vision prompt in its own class "
    "(xinference/model/llm/transformers/multimodal/{}.py), which turns content lists into text "
    "with the model's processor files; the catalog template alone cannot take OpenAI content lists"
)

LIMITATIONS: dict[tuple[str, str], str] = {
    ("llama-3.1-instruct", "parallel tools"): _SINGLE_TOOL_CALL,
    ("llama-3.3-instruct", "parallel tools"): _SINGLE_TOOL_CALL,
    ("HuatuoGPT-o1-LLaMA-3.1", "parallel tools"): _SINGLE_TOOL_CALL,
    ("InternVL3", "image"): _OWN_MULTIMODAL_CLASS.format("intern_vl"),
    ("MiniCPM-V-2.6", "image"): _OWN_MULTIMODAL_CLASS.format("minicpmv26"),
    ("MiniCPM-V-4.5", "image"): _OWN_MULTIMODAL_CLASS.format("minicpmv45"),
    ("Ovis2", "image"): _OWN_MULTIMODAL_CLASS.format("ovis2"),
    ("cogagent", "image"): _OWN_MULTIMODAL_CLASS.format("cogagent"),
}
