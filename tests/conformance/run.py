"""The model-family conformance tier: every chat family of the installed Xinference × every
conversation shape Dify sends, through the plugin's own request building and the server's
own request checks and template rendering.

    .venv/bin/python -m tests.conformance [--json report.json] [--family NAME ...]

The Xinference half (`xinference_side.py`) runs in the testbed's venv ($TESTBED_HOME/venv,
built by `scripts/testbed setup` when missing). A pair passes when the server answers 200,
every message's text is in the rendered prompt and no earlier reasoning is, unless the
family's template renders it from the reasoning field. Exit status 1 when a pair fails that
is not listed in `LIMITATIONS` (failures no client can fix, each with its reason).
"""

import dify_plugin  # noqa: F401  isort: skip  (patches the standard library as in the plugin)

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dify_plugin.entities.model.message import (
    AssistantPromptMessage,
    PromptMessage,
    TextPromptMessageContent,
)
from dify_plugin.errors.model import InvokeError

from models.common import memory
from models.llm.llm import XinferenceLargeLanguageModel
from tests.conformance.limitations import LIMITATIONS
from tests.conformance.shapes import SHAPES, Shape

REPO = Path(__file__).resolve().parents[2]
PASS, FAIL, KNOWN, NOT_SENT, CHECKED = "ok", "FAIL", "lim", "-", "chk"
# The stand-in model's answer when the catalog has no template for the family.
NO_TEMPLATE = "template: LookupError"


def testbed_python() -> str:
    home = Path(os.environ.get("TESTBED_HOME") or REPO / ".testbed")
    python = home / "venv" / "bin" / "python"
    if not (home / "venv" / ".testbed-complete").exists():
        subprocess.run([sys.executable, str(REPO / "scripts" / "testbed"), "setup"], check=True)
    return str(python)


def start_server() -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [testbed_python(), str(Path(__file__).with_name("xinference_side.py"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = server.stdout.readline()
    if not line.startswith("listening "):
        server.kill()
        raise SystemExit(f"the Xinference side did not start: {line!r}")
    return server, f"http://127.0.0.1:{line.split()[1]}"


def text_of(message: PromptMessage) -> str:
    if isinstance(message.content, str) or message.content is None:
        return message.content or ""
    return "\n".join(part.data for part in message.content if isinstance(part, TextPromptMessageContent))


def expected_texts(shape: Shape) -> tuple[list[str], list[str]]:
    """(texts the prompt must contain, earlier reasoning it should not)."""
    wanted, reasoning = [], []
    for message in shape.messages:
        text = text_of(message)
        if isinstance(message, AssistantPromptMessage) and "</think>" in text:
            thought, text = text.split("</think>", 1)
            reasoning.append(thought.replace("<think>", "").strip())
        if text.strip():
            wanted.append(text.strip())
    return wanted, reasoning


def family_parameters(schema) -> dict | None:
    """Thinking off and the first reasoning effort, where the schema offers them."""
    parameters = {}
    for rule in schema.parameter_rules:
        if rule.name == "enable_thinking":
            parameters["enable_thinking"] = False
        elif rule.name == "reasoning_effort" and rule.options:
            parameters["reasoning_effort"] = rule.options[0]
    return parameters or None


def run_pair(model, credentials: dict, schema, shape: Shape, entry: dict) -> tuple[str, str]:
    if shape.needs and shape.needs not in (schema.features or []):
        return NOT_SENT, "Dify does not send this to a model without " + shape.needs.value
    parameters = {}
    if shape.parameters:
        parameters = family_parameters(schema)
        if parameters is None:
            return NOT_SENT, "no thinking or reasoning-effort parameter for this family"
    try:
        chunks = model.invoke(
            entry["family"], credentials, shape.messages, parameters, tools=shape.tools or None, stream=False
        )
        prompt = "".join(chunk.delta.message.content or "" for chunk in chunks)
    except InvokeError as exc:
        if not entry["has_template"] and NO_TEMPLATE in str(exc):
            return CHECKED, "the server's request checks passed; no template in the catalog to render"
        return FAIL, f"{type(exc).__name__}: {exc}"[:400]
    wanted, reasoning = expected_texts(shape)
    missing = [text[:60] for text in wanted if text not in prompt]
    if missing:
        return FAIL, f"missing from the prompt: {missing}"
    leaked = [text[:40] for text in reasoning if text in prompt]
    if leaked and not entry["reads_reasoning"]:
        return FAIL, f"earlier reasoning in the prompt: {leaked}"
    return PASS, ""


def print_tables(results: dict, families: list[str]) -> None:
    print("\n## Per conversation shape")
    for shape in SHAPES:
        cells = {family: results[family][shape.name] for family in families}
        counts = {
            mark: sum(1 for status, _ in cells.values() if status == mark)
            for mark in (PASS, FAIL, KNOWN, NOT_SENT, CHECKED)
        }
        print(
            f"\n### {shape.name}: {counts[PASS]} pass, {counts[FAIL]} fail, {counts[KNOWN]} known limitation, "
            f"{counts[CHECKED]} request checks only, {counts[NOT_SENT]} not sent by Dify"
        )
        for family, (status, why) in cells.items():
            if status in (FAIL, KNOWN):
                print(f"  {status:4} {family}: {why}")
    width = max(len(family) for family in families)
    print(
        "\n## Families × shapes (ok pass, FAIL ours to fix, lim known limitation, "
        "chk request checks only (no template in the catalog), - not sent by Dify)"
    )
    print(" " * width + " | " + " | ".join(shape.name for shape in SHAPES))
    for family in families:
        row = [f"{results[family][shape.name][0]:^{len(shape.name)}}" for shape in SHAPES]
        print(f"{family:<{width}} | " + " | ".join(row))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write every pair's result to this file")
    parser.add_argument("--family", action="append", help="only these families")
    options = parser.parse_args()
    started = time.monotonic()
    server, url = start_server()
    print(f"the Xinference side is up after {time.monotonic() - started:.0f}s", flush=True)
    try:
        import requests

        catalog = requests.get(f"{url}/catalog", timeout=60).json()
        model = XinferenceLargeLanguageModel(model_schemas=[])
        results: dict[str, dict[str, tuple[str, str]]] = {}
        skipped: dict[str, str] = {}
        for entry in catalog:
            family = entry["family"]
            if options.family and family not in options.family:
                continue
            if "chat" not in entry["description"]["model_ability"]:
                skipped[family] = "generate-only: Dify sends a plain prompt to /v1/completions, no template"
                continue
            credentials = {"server_url": url, "model_uid": family, "invoke_timeout": "120"}
            memory.forget_everything()
            schema = model.get_customizable_model_schema(family, credentials)
            results[family] = {}
            for shape in SHAPES:
                status, why = run_pair(model, credentials, schema, shape, entry)
                if status == FAIL and (family, shape.name) in LIMITATIONS:
                    status, why = KNOWN, f"{LIMITATIONS[(family, shape.name)]} [{why[:120]}]"
                results[family][shape.name] = (status, why)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    families = sorted(results)
    print_tables(results, families)
    print("\n## Not checked here")
    for family, why in sorted(skipped.items()):
        print(f"  {family}: {why}")
    failures = [(f, s, why) for f in families for s, (status, why) in results[f].items() if status == FAIL]
    known = [(f, s) for f in families for s, (status, _) in results[f].items() if status == KNOWN]
    stale = sorted(set(LIMITATIONS) - set(known) - {(f, s) for f, s, _ in failures})
    total = sum(1 for f in families for status, _ in results[f].values() if status != NOT_SENT)
    print(
        f"\n{len(families)} chat families × {len(SHAPES)} shapes: {total} pairs sent, {len(failures)} failing, "
        f"{len(known)} known limitations, {len(skipped)} families not checked; {time.monotonic() - started:.0f}s"
    )
    if stale and not options.family:
        print(f"limitations that no longer fail (remove them from limitations.py): {stale}")
    if options.json:
        Path(options.json).write_text(json.dumps({"results": results, "skipped": skipped}, indent=1, ensure_ascii=False))
    return 1 if failures or (stale and not options.family) else 0


if __name__ == "__main__":
    sys.exit(main())
