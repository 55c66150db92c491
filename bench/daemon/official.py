"""The official `langgenius/xinference` plugin, measured beside ours (`--official DIR`).

Its folder comes from the command line (e.g. `models/xinference` of a checkout of
langgenius/dify-official-plugins) and is never committed here. It is packaged with the
official CLI as is: Marketplace rules are not ours to check on it.

Offline it fails every LLM call: the SDK's `_get_num_tokens_by_gpt2` asks tiktoken for the
GPT-2 encoding, which downloads `vocab.bpe` and `encoder.json`. The daemon (and through
it every plugin) gets a TIKTOKEN_CACHE_DIR holding both, rebuilt byte for byte from the
`gpt2.tiktoken` that ships inside the testbed's Xinference package (Whisper's assets):
the merges are recovered by replaying BPE over the ranks, and tiktoken checks the result
against the sha256 it knows, as for a download.
"""

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

from bench.cases import Server
from tests.daemon.services import ServiceError, tool_path, uv_path
from tests.runtime.harness import REPO_ROOT

# tiktoken_ext/openai_public.py: the GPT-2 files and their sha256.
GPT2_FILES = {
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe":
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json":
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}  # fmt: skip
END_OF_TEXT = 50256


def official_credentials(server: Server, role: str) -> dict:
    """The official plugin's credential form (provider/xinference.yaml there), as Dify stores it."""
    credentials = {"server_url": server.url, "model_uid": server.uids[role], "invoke_timeout": "600", "max_retries": "0"}
    if server.api_key:
        credentials["api_key"] = server.api_key
    return credentials


def package_as_is(root: Path, output: Path) -> None:
    # Its pyproject.toml + uv.lock: the CLI exports requirements.txt with the `uv` on PATH.
    path = f"{Path(str(uv_path())).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    completed = subprocess.run([tool_path("dify"), "plugin", "package", str(root), "-o", str(output)],
                               capture_output=True, text=True, timeout=300, env={**os.environ, "PATH": path})  # fmt: skip
    if completed.returncode != 0 or not output.is_file():
        raise ServiceError(f"`dify plugin package {root}` failed:\n{completed.stdout}{completed.stderr}")


def tiktoken_cache(folder: Path) -> str:
    """Writes tiktoken's cache of the GPT-2 files into `folder`; its path."""
    ranks = _gpt2_ranks()
    letters = _data_gym_letters()

    def spelled(token: bytes) -> str:
        return "".join(letters[byte] for byte in token)

    ordered = sorted(ranks, key=ranks.__getitem__)
    merges = [" ".join(spelled(part) for part in _merge_of(token, ranks)) for token in ordered if len(token) > 1]
    encoder = {spelled(token): ranks[token] for token in ordered} | {"<|endoftext|>": END_OF_TEXT}
    contents = ["#version: 0.2\n" + "\n".join(merges) + "\n", json.dumps(encoder)]
    folder.mkdir(parents=True, exist_ok=True)
    for (url, expected), text in zip(GPT2_FILES.items(), contents):
        data = text.encode()
        if hashlib.sha256(data).hexdigest() != expected:
            raise ServiceError(f"the rebuilt {url.rsplit('/', 1)[1]} differs from the original (sha256)")
        (folder / hashlib.sha1(url.encode()).hexdigest()).write_bytes(data)
    return str(folder)


def _gpt2_ranks() -> dict[bytes, int]:
    home = Path(os.environ.get("TESTBED_HOME") or REPO_ROOT / ".testbed")
    found = sorted(home.glob("venv/lib/python3*/site-packages/xinference/thirdparty/whisper/assets/gpt2.tiktoken"))
    if not found:
        raise ServiceError(f"no gpt2.tiktoken in the testbed's Xinference under {home} (run scripts/testbed setup)")
    ranks = {}
    for line in found[0].read_bytes().splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _data_gym_letters() -> dict[int, str]:
    """GPT-2's byte → character table: printable bytes as themselves, the rest from U+0100 on."""
    letters = {byte: chr(byte) for byte in range(256) if chr(byte).isprintable() and chr(byte) != " "}
    others = [byte for byte in range(256) if byte not in letters]
    letters.update({byte: chr(256 + number) for number, byte in enumerate(others)})
    return letters


def _merge_of(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two tokens BPE joined into `token`: its bytes merged by lower ranks until two remain."""
    parts = [bytes([byte]) for byte in token]
    while len(parts) > 2:
        rank, at = min((ranks.get(parts[i] + parts[i + 1], len(ranks)), i) for i in range(len(parts) - 1))
        if rank >= ranks[token]:
            raise ServiceError(f"no merge path to the GPT-2 token {token!r}")
        parts[at : at + 2] = [parts[at] + parts[at + 1]]
    return parts[0], parts[1]
