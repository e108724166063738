"""Run the standalone Milvus server shipped by the ``milvus`` package (development and tests).

``start`` launches ``milvus run standalone`` in its own session (it outlives the caller),
with its data, logs and config under one folder, and returns once the server answers;
``stop`` ends it; ``status`` reports it. The server's pid and ports are kept in
``<dir>/lookalike-server.json``. Real deployments run their own Milvus and only point
``LOOKALIKE_STORE`` at it.

Needs the optional extra: ``pip install -e '.[milvus]'`` (``milvus==2.3.5``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["ServerInfo", "free_port", "server_status", "start_server", "stop_server"]

STATE_FILE = "lookalike-server.json"


@dataclass(frozen=True)
class ServerInfo:
    """A running server: ``pid``, the gRPC ``port`` clients use, ``health_port`` (HTTP /healthz)."""

    pid: int
    port: int
    health_port: int
    base_dir: str

    @property
    def uri(self) -> str:
        return f"milvus://127.0.0.1:{self.port}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a recycled pid is not our server
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    if b"milvus" not in cmdline:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


def _healthy(health_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=2) as resp:
            return "OK" in resp.read().decode("utf-8", "replace")
    except (OSError, urllib.error.URLError):
        return False


def server_status(base_dir: Path) -> tuple[ServerInfo | None, bool]:
    """(the server recorded under ``base_dir`` if its process runs, whether it answers)."""
    try:
        info = ServerInfo(**json.loads((base_dir / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None, False
    if not _alive(info.pid):
        return None, False
    return info, _healthy(info.health_port)


def start_server(base_dir: Path, port: int = 19530, timeout: float = 180.0) -> ServerInfo:
    """Start a Milvus standalone server keeping its state under ``base_dir``.

    Returns once it answers health checks and accepts connections on ``port``; a server
    already running there is returned as is.

    Raises:
        RuntimeError: the ``milvus`` package is missing, ``port`` is taken, or the server
            exited or did not answer within ``timeout`` seconds (its logs are under
            ``base_dir/logs``).
    """
    try:
        import milvus
    except ImportError:
        raise RuntimeError("the Milvus server needs the optional extra: pip install -e '.[milvus]'") from None
    base_dir = base_dir.resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    running, healthy = server_status(base_dir)
    if running is not None:
        if healthy:
            return running
        _wait(running, timeout, lambda: _alive(running.pid))
        return running

    # Ports are checked free, then released for the server to bind: another server starting at
    # the same moment can take one in between, so a start that fails that way is retried.
    for attempt in range(3):
        try:
            return _launch(milvus, base_dir, port, timeout)
        except _PortRace:
            if attempt == 2:
                raise RuntimeError(f"Milvus could not bind its ports; see {base_dir}/logs") from None
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


class _PortRace(RuntimeError):
    """The server exited at start because a port it was given was taken meanwhile."""


def _launch(milvus: Any, base_dir: Path, port: int, timeout: float) -> ServerInfo:
    config = milvus.MilvusServerConfig()
    config.update(data_dir=str(base_dir), proxy_port=int(port))
    config.resolve_storage()
    try:
        config.resolve()  # binds every port once to check it is free, writes configs/milvus.yaml
    except RuntimeError:
        raise RuntimeError(f"port {port} is taken on 127.0.0.1") from None
    _adjust_config(base_dir)
    milvus._initialize_data_files(config.base_data_dir)  # unpacks the server binary once
    health_port, sock = config.resolve_port(9091)
    sock.close()
    exe = Path(config.base_data_dir) / "bin" / "milvus"
    env = dict(os.environ)
    env.update(
        DEPLOY_MODE="STANDALONE",
        METRICS_PORT=str(health_port),
        MILVUS_RUN_DIR=str(base_dir / "run"),
        LD_LIBRARY_PATH=f"{exe.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
    )
    logs = base_dir / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / "milvus-stdout.log", "ab") as out, open(logs / "milvus-stderr.log", "ab") as errf:
        proc = subprocess.Popen(
            # The alias names its pid file (/run/milvus/standalone-<alias>.pid): without one a
            # second server on the host finds the file locked and exits.
            [str(exe), "run", "standalone", "-alias", f"lookalike{port}"],
            cwd=base_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=errf,
            start_new_session=True,  # outlives this process and its terminal's Ctrl-C
        )
    info = ServerInfo(pid=proc.pid, port=int(port), health_port=health_port, base_dir=str(base_dir))
    (base_dir / STATE_FILE).write_text(json.dumps(asdict(info)))
    try:
        _wait(info, timeout, lambda: proc.poll() is None)
    except RuntimeError:
        stop_server(base_dir)
        if "address already in use" in (logs / "milvus-stderr.log").read_text(errors="replace")[-20000:]:
            (logs / "milvus-stderr.log").unlink()
            raise _PortRace() from None
        raise
    return info




def _adjust_config(base_dir: Path) -> None:
    """Turn the interim index off (below) and give the embedded etcd its own free ports. Its
    defaults (2379, 2380) are fixed, so a second server on the host (a test run beside ``lookalike milvus start``) would crash;
    Milvus talks to it in-process, so only etcd itself uses these. Kept across restarts
    (etcd records its peer address with its data)."""
    etcd_conf = base_dir / "configs" / "etcd.yaml"
    if not etcd_conf.exists():
        peer, client = free_port(), free_port()
        etcd_conf.write_text(
            "name: default\n"
            f"listen-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-cluster: default=http://127.0.0.1:{peer}\n"
            f"listen-client-urls: http://127.0.0.1:{client}\n"
            f"advertise-client-urls: http://127.0.0.1:{client}\n"
        )
    milvus_yaml = base_dir / "configs" / "milvus.yaml"
    text = milvus_yaml.read_text()
    if "\netcd:\n  config:" not in text:
        text = text.replace("\netcd:\n", f"\netcd:\n  config:\n    path: {etcd_conf}\n", 1)
    # Segments without their HNSW index yet are searched through an "interim" IVF index
    # (nprobe 16), whose recall under selective filters falls far below 0.98 (measured 0.07 at
    # 0.1%); without it they are scanned exactly until the real index is loaded.
    text = re.sub(r"(\n    interimIndex:[^\n]*\n      enableIndex:) true", r"\1 false", text, count=1)
    milvus_yaml.write_text(text)


def _wait(info: ServerInfo, timeout: float, running: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running():
            raise RuntimeError(f"Milvus exited while starting; see {info.base_dir}/logs")
        if _healthy(info.health_port):
            try:
                with socket.create_connection(("127.0.0.1", info.port), timeout=2):
                    return
            except OSError:
                pass
        time.sleep(0.2)
    raise RuntimeError(f"Milvus did not answer within {timeout:g} s; see {info.base_dir}/logs")


def stop_server(base_dir: Path, timeout: float = 30.0) -> bool:
    """Stop the server recorded under ``base_dir``: SIGTERM, then SIGKILL after ``timeout``
    seconds. Returns whether one was running."""
    base_dir = base_dir.resolve()
    info, _ = server_status(base_dir)
    state = base_dir / STATE_FILE
    if info is None:
        state.unlink(missing_ok=True)
        return False
    try:
        os.killpg(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while _alive(info.pid) and time.monotonic() < deadline:
        _reap(info.pid)
        time.sleep(0.1)
    if _alive(info.pid):
        try:
            os.killpg(info.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while _alive(info.pid):
            _reap(info.pid)
            time.sleep(0.1)
    _reap(info.pid)
    state.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    # When this process started the server it is its parent: collect the exit status.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
