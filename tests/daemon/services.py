"""The real Dify plugin daemon on loopback, with the PostgreSQL and Redis it needs.

Set up as Dify's docker image runs it: `commandline migrate` (our `dify migrate`), then
the server with PLATFORM=local, unsigned packages allowed, uv from PyPI, a Python 3.12 on
PATH, and remote installing (debugging) on its own loopback port. Everything listens on
127.0.0.1 only and lives under `.daemon/` (git- and dify-ignored):
  .daemon/run/      this run: database, Redis, the daemon's storage and log; wiped at start
                    (`python -m bench --daemon` uses .daemon/bench-run/)
  .daemon/work/     the daemon's PLUGIN_WORKING_PATH: unpacked plugins, their venvs and uv's
                    cache, kept between runs so an unchanged package reinstalls from cache;
                    one daemon at a time uses it (a lock file; a second one waits)
"""

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.runtime.harness import REPO_ROOT, base_python, unused_port

STATE_ROOT = REPO_ROOT / ".daemon"
POSTGRES_BIN = Path(os.environ.get("POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
START_TIMEOUT = 60.0
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class ServiceError(RuntimeError):
    """A service did not come up; the message carries the end of its log."""


def tool_path(name: str) -> str | None:
    found = subprocess.run([str(REPO_ROOT / "scripts" / "tools"), "path", name], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def uv_path() -> str | None:
    candidate = Path(sys.executable).parent / "uv"
    return str(candidate) if candidate.exists() else shutil.which("uv")


def missing_prerequisites() -> list[str]:
    """Why the daemon tier cannot run here, one reason per line (empty: it can)."""
    reasons = []
    for name in ("dify", "dify-plugin-daemon"):
        if tool_path(name) is None:
            reasons.append(f"{name} is not built (run scripts/tools)")
    if not (POSTGRES_BIN / "postgres").exists():
        reasons.append(f"no PostgreSQL server in {POSTGRES_BIN} (apt-get install postgresql, or set POSTGRES_BIN)")
    if shutil.which("redis-server") is None:
        reasons.append("no redis-server on PATH (apt-get install redis-server)")
    if uv_path() is None:
        reasons.append("no uv (pip install -r tests/daemon/requirements.txt)")
    return reasons


def package(root: Path, output: Path) -> str:
    """Builds the plugin folder `root` with scripts/package (the official CLI) into `output`;
    the unique identifier it printed."""
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "package"), "--root", str(root), "--output", str(output)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if completed.returncode != 0:
        raise ServiceError(f"scripts/package --root {root} failed:\n{completed.stdout}{completed.stderr}")
    return re.search(r"unique identifier (\S+)", completed.stdout).group(1)


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(ready, what: str, log: Path, process: subprocess.Popen, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise ServiceError(f"{what} exited with code {process.returncode}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} was not ready within {timeout:g} s:\n{log_tail(log)}")
        time.sleep(0.2)


def stop_process(process: subprocess.Popen | None, stop_signal: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(stop_signal)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@dataclass
class Postgres:
    """A throwaway cluster: trust authentication, reachable only on 127.0.0.1."""

    root: Path
    port: int = field(default_factory=unused_port)
    process: subprocess.Popen | None = None

    def _as_owner(self) -> list[str]:
        # PostgreSQL refuses to run as root; the Debian package brings the `postgres` user.
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def start(self) -> None:
        data, log = self.root / "data", self.root / "postgres.log"
        self.root.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            [*self._as_owner(), str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        with open(log, "ab") as output:
            self.process = subprocess.Popen(
                [*self._as_owner(), str(POSTGRES_BIN / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                 "-p", str(self.port), "-k", str(self.root), "-c", "fsync=off"],
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_until(self._ready, "PostgreSQL", log, self.process)

    def _ready(self) -> bool:
        probe = [str(POSTGRES_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        return subprocess.run(probe, capture_output=True).returncode == 0

    def stop(self) -> None:
        # SIGINT is PostgreSQL's fast shutdown; `runuser` does not pass it on, so it goes to
        # the postmaster named in its pid file.
        try:
            postmaster = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
            os.kill(postmaster, signal.SIGINT)
        except (OSError, ValueError, IndexError):
            pass
        stop_process(self.process, signal.SIGINT)


@dataclass
class Redis:
    root: Path
    port: int = field(default_factory=unused_port)
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True)
        log = self.root / "redis.log"
        with open(log, "ab") as output:
            self.process = subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.root),
                 "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"],
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_until(self._ready, "Redis", log, self.process)

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.process)


@dataclass
class Daemon:
    """`dify migrate`, then `dify-plugin-daemon`, both with the environment below."""

    root: Path
    work: Path
    postgres: Postgres
    redis: Redis
    port: int = field(default_factory=unused_port)
    debugging_port: int = field(default_factory=unused_port)
    server_key: str = field(default_factory=lambda: "daemon-key-" + uuid.uuid4().hex)
    extra_environment: dict[str, str] = field(default_factory=dict)  # passed on to the plugins too
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "daemon.log"

    def environment(self) -> dict[str, str]:
        python_312_dir = str(Path(base_python()).resolve().parent)
        return {
            "PATH": f"{python_312_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/root"),
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(self.port),
            "SERVER_KEY": self.server_key,
            # Used only when a plugin calls back into Dify, which a model plugin never does.
            "DIFY_INNER_API_URL": "http://127.0.0.1:1",
            "DIFY_INNER_API_KEY": "unused-" + uuid.uuid4().hex,
            "PLATFORM": "local",
            "PLUGIN_WORKING_PATH": str(self.work),
            "PLUGIN_STORAGE_TYPE": "local",
            "PLUGIN_STORAGE_LOCAL_ROOT": str(self.root / "storage"),
            "PLUGIN_INSTALLED_PATH": "plugin",
            "PLUGIN_PACKAGE_CACHE_PATH": "plugin_packages",
            "PLUGIN_MEDIA_CACHE_PATH": "assets",
            "PERSISTENCE_STORAGE_PATH": "persistence",
            "FORCE_VERIFYING_SIGNATURE": "false",
            "PLUGIN_REMOTE_INSTALLING_ENABLED": "true",
            "PLUGIN_REMOTE_INSTALLING_HOST": "127.0.0.1",
            "PLUGIN_REMOTE_INSTALLING_PORT": str(self.debugging_port),
            "DB_TYPE": "postgresql",
            "DB_HOST": "127.0.0.1",
            "DB_PORT": str(self.postgres.port),
            "DB_USERNAME": "postgres",
            "DB_PASSWORD": "trust-auth-on-loopback",
            "DB_DATABASE": "dify_plugin",
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(self.redis.port),
            "UV_PATH": str(uv_path()),
            "UV_PYTHON_DOWNLOADS": "never",
            "PYTHON_INTERPRETER_PATH": base_python(),
            "PIP_MIRROR_AUTO_DETECT": "false",
            "PIP_VERBOSE": "false",
            "SSL_CERT_FILE": os.environ.get("SSL_CERT_FILE", CA_BUNDLE),
            **self.extra_environment,
        }

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        migrate = subprocess.run(
            [tool_path("dify"), "migrate"], cwd=self.root, env=env, capture_output=True, text=True, timeout=120
        )
        if migrate.returncode != 0:
            raise ServiceError(f"dify migrate failed:\n{migrate.stdout}{migrate.stderr}")
        with open(self.log, "ab") as output:
            # Its own process group: the plugins it starts do not exit with it, stop() ends them all.
            self.process = subprocess.Popen(
                [tool_path("dify-plugin-daemon")], cwd=self.root, env=env, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self._healthy, "the plugin daemon", self.log, self.process)

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/health/check", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # nothing to save: the next run starts afresh
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)


@dataclass
class DaemonStack:
    postgres: Postgres
    redis: Redis
    daemon: Daemon
    timings: dict[str, float] = field(default_factory=dict)

    _work_lock: int | None = field(default=None, init=False, repr=False)

    @classmethod
    def create(cls, run_name: str = "run", extra_environment: dict[str, str] | None = None) -> "DaemonStack":
        """A stack whose run state lives in .daemon/<run_name>/ (wiped now) and whose plugins
        in the shared .daemon/work/."""
        run = STATE_ROOT / run_name
        shutil.rmtree(run, ignore_errors=True)
        postgres, redis = Postgres(run / "postgres"), Redis(run / "redis")
        daemon = Daemon(run / "daemon", STATE_ROOT / "work", postgres, redis, extra_environment=extra_environment or {})
        return cls(postgres, redis, daemon)

    def start(self) -> None:
        self._lock_work()
        for name, service in (("postgres", self.postgres), ("redis", self.redis), ("daemon", self.daemon)):
            started = time.monotonic()
            service.start()
            self.timings[name] = time.monotonic() - started

    def stop(self) -> None:
        for service in (self.daemon, self.redis, self.postgres):
            try:
                service.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others whatever happens
                print(f"daemon tier: stopping {type(service).__name__} failed: {exc}", file=sys.stderr)
        if self._work_lock is not None:
            os.close(self._work_lock)  # releases the lock
            self._work_lock = None

    def _lock_work(self) -> None:
        """Two daemons installing into one working path would overwrite each other's venvs."""
        self.daemon.work.mkdir(parents=True, exist_ok=True)
        self._work_lock = os.open(self.daemon.work / ".lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(self._work_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"daemon: waiting for the other daemon using {self.daemon.work} to stop", file=sys.stderr, flush=True)
            fcntl.flock(self._work_lock, fcntl.LOCK_EX)
