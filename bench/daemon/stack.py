"""The daemon the bench measures through, and the plugins installed in it.

The daemon tier's own services (tests/daemon/services.py: PostgreSQL, Redis, `dify migrate`,
the daemon on loopback) and its client (tests/daemon/client.py: upload, install, dispatch
as Dify's API server sends them). Every plugin is packaged with the official CLI
(scripts/package) and installed through the daemon's HTTP API, as Dify's console does.
"""

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from requests.adapters import HTTPAdapter

from bench.daemon.official import package_as_is
from tests.daemon.client import DaemonClient
from tests.daemon.services import DaemonStack, ServiceError, missing_prerequisites, package

NULL_PLUGIN_ROOT = Path(__file__).resolve().parent.parent / "null_plugin"
# Room for every concurrent stream of the load test on its own keep-alive connection.
CLIENT_CONNECTIONS = 128


@dataclass
class InstalledPlugin:
    name: str  # "plugin", "null", "official"
    root: Path  # the folder that was packaged
    plugin_id: str  # X-Plugin-ID: author/name
    provider: str
    identifier: str  # author/name:version@sha256


class BenchDaemon:
    """One daemon (state in .daemon/bench-run/) with the bench's plugins installed."""

    def __init__(self, extra_environment: dict[str, str]) -> None:
        reasons = missing_prerequisites()
        if reasons:
            raise ServiceError("the daemon bench cannot run here:\n  " + "\n  ".join(reasons))
        self.stack = DaemonStack.create("bench-run", extra_environment)
        self.client: DaemonClient | None = None
        self.plugins: dict[str, InstalledPlugin] = {}
        self.install_seconds = 0.0
        self._scratch = tempfile.TemporaryDirectory(prefix="bench-daemon-")

    def start(self) -> None:
        self.stack.start()
        self.client = DaemonClient(self.stack.daemon.url, self.stack.daemon.server_key)
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=CLIENT_CONNECTIONS, max_retries=0)
        self.client.session.mount("http://", adapter)

    def install(self, roots: dict[str, Path]) -> None:
        """Packages each plugin folder, uploads the packages and installs them in one task."""
        started = time.monotonic()
        uploaded: dict[str, str] = {}
        for name, root in roots.items():
            built = Path(self._scratch.name) / f"{name}.difypkg"
            if name == "official":
                package_as_is(root, built)
            else:
                package(root, built)
            uploaded[name] = self.client.upload(built)
        task = self.client.install(*uploaded.values())
        if task["status"] != "success":
            raise ServiceError(f"installing {', '.join(map(str, roots.values()))} failed: {task}")
        self.install_seconds = time.monotonic() - started
        for name, root in roots.items():
            manifest = yaml.safe_load((root / "manifest.yaml").read_text())
            provider = yaml.safe_load((root / manifest["plugins"]["models"][0]).read_text())["provider"]
            self.plugins[name] = InstalledPlugin(
                name=name, root=root, plugin_id=uploaded[name].partition(":")[0], provider=provider,
                identifier=uploaded[name],
            )  # fmt: skip

    def plugin_pids(self) -> dict[str, int]:
        """The running process of each installed plugin: the daemon's children, by the plugin
        folder they run in (the daemon unpacks a package into a folder named after it)."""
        daemon_pid = self.stack.daemon.process.pid
        found: dict[str, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cwd = (entry / "cwd").resolve()
                manifest = yaml.safe_load((cwd / "manifest.yaml").read_text()) if parent == daemon_pid else None
            except (OSError, ValueError, IndexError, yaml.YAMLError):
                continue
            if not manifest:
                continue
            plugin_id = f"{manifest.get('author')}/{manifest.get('name')}"
            for plugin in self.plugins.values():
                if plugin.plugin_id == plugin_id:
                    found[plugin.name] = int(entry.name)
        return found

    def close(self) -> None:
        self.stack.stop()
        self._scratch.cleanup()

    @property
    def log(self) -> Path:
        return self.stack.daemon.log


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None

