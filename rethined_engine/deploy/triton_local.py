"""Run the `tritonserver` shipped in the nvidia-pytriton wheel on 127.0.0.1, for tests and local measurements
without the Triton container.

The wheel holds the server (pytriton/tritonserver/bin), its libraries (nvidia_pytriton.libs), the Python
backend (pytriton/tritonserver/backends/python) and one Python-backend stub per CPython version
(pytriton/tritonserver/python_backend_stubs/3.X). `LocalTritonServer` assembles a backend folder with the
stub of the running interpreter's version and starts the server with this interpreter's environment first on
PATH: the stub runs the `python3` it finds there, so model.py imports what this environment has installed.
The stub links libpython3.X.so.1.0; this interpreter's own, where it is a shared build, goes first on
LD_LIBRARY_PATH, so the stub does not run another patch release's libpython (e.g. the system's) with this
environment's standard library.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STUB = "triton_python_backend_stub"
PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
READY_TIMEOUT_S = 180.0     # model loading includes the Engine's import of torch and its weights
POLL_INTERVAL_S = 0.5
EXIT_TIMEOUT_S = 10         # tritonserver's wait for in-flight requests and open connections when stopped
STOP_TIMEOUT_S = 30.0       # then SIGKILL
LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class PytritonServer:
    """Paths inside an installed nvidia-pytriton wheel."""

    binary: Path          # tritonserver
    libraries: Path       # nvidia_pytriton.libs: the shared libraries the binary and the stubs link
    python_backend: Path  # libtriton_python.so and triton_python_backend_utils.py
    stub: Path            # the Python-backend stub for this interpreter's CPython version


def find_pytriton_server() -> PytritonServer | None:
    """The nvidia-pytriton wheel installed in this interpreter's environment, or None where it is missing or
    ships no stub for this CPython version."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    server = PytritonServer(binary=root / "bin" / "tritonserver", libraries=root.parent.parent / "nvidia_pytriton.libs",
                            python_backend=root / "backends" / "python",
                            stub=root / "python_backend_stubs" / version / STUB)
    return server if server.binary.is_file() and server.stub.is_file() else None


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that nothing listens on now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:   # all bound at once, so the system hands out distinct ports
            sock.bind((LOCALHOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LocalTritonServer:
    """`tritonserver --model-repository REPOSITORY` on free 127.0.0.1 ports, as a context manager that waits
    until the server is ready and stops it on exit. `http_url` and `grpc_url` ("127.0.0.1:PORT") are for
    `tritonclient.http` and `tritonclient.grpc`; the server's log is in `log_path`."""

    def __init__(self, repository: str | Path, server: PytritonServer | None = None):
        self.server = server or find_pytriton_server()
        if self.server is None:
            raise FileNotFoundError("nvidia-pytriton: not installed in this environment (or no stub for CPython "
                                    f"{sys.version_info.major}.{sys.version_info.minor}); pip install nvidia-pytriton")
        self.repository = Path(repository)
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.http_url, self.grpc_url = f"{LOCALHOST}:{self.http_port}", f"{LOCALHOST}:{self.grpc_port}"
        self._workdir = Path(tempfile.mkdtemp(prefix="tritonserver-"))
        self.log_path = self._workdir / "tritonserver.log"
        self._process: subprocess.Popen | None = None

    def _backend_directory(self) -> Path:
        """A backend folder for --backend-directory: python/ with the backend and this interpreter's stub."""
        python_dir = self._workdir / "backends" / "python"
        python_dir.mkdir(parents=True)
        for name in PYTHON_BACKEND_FILES:
            shutil.copy2(self.server.python_backend / name, python_dir / name)
        shutil.copy2(self.server.stub, python_dir / STUB)
        return python_dir.parent

    def command(self) -> list[str]:
        """The tritonserver command line (HTTP, gRPC and metrics on 127.0.0.1 only)."""
        return [str(self.server.binary), f"--model-repository={self.repository}",
                f"--backend-directory={self._backend_directory()}",
                f"--http-address={LOCALHOST}", f"--http-port={self.http_port}",
                f"--grpc-address={LOCALHOST}", f"--grpc-port={self.grpc_port}",
                f"--metrics-address={LOCALHOST}", f"--metrics-port={self.metrics_port}",
                f"--exit-timeout-secs={EXIT_TIMEOUT_S}"]

    def environment(self) -> dict[str, str]:
        """This process's environment with this interpreter's libpython (if shared) and the wheel's libraries on
        LD_LIBRARY_PATH and this interpreter's bin folder first on PATH (where the stub finds python3)."""
        env = dict(os.environ)
        libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
        own_libpython = libdir if libdir and soname and (Path(libdir) / soname).is_file() else None
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [own_libpython, str(self.server.libraries),
                                                                env.get("LD_LIBRARY_PATH")]))
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def start(self) -> "LocalTritonServer":
        """Start the server and wait until it is ready (every model loaded); raises RuntimeError with the end of
        its log when it exits or is not ready within READY_TIMEOUT_S."""
        import tritonclient.http as triton_http

        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                             env=self.environment())
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"tritonserver exited with code {self._process.returncode}:\n{tail}")
            client = triton_http.InferenceServerClient(self.http_url)
            try:
                if client.is_server_ready():
                    return self
            except (ConnectionError, OSError):   # not listening yet
                pass
            finally:
                client.close()   # an open connection holds the server's shutdown for its exit timeout
            time.sleep(POLL_INTERVAL_S)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"tritonserver not ready after {READY_TIMEOUT_S:.0f}s:\n{tail}")

    def log_tail(self, lines: int = 40) -> str:
        """The server log's error lines (glog's "E" prefix), then its last `lines` lines."""
        log = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join([line for line in log if line.startswith("E")] + log[-lines:])

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after STOP_TIMEOUT_S) and remove its folder and log."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> "LocalTritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
