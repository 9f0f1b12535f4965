"""
harness — drive statemeshd, function servers and the ingress from Python tests.

Reusable by every pytest suite of the project (integration, fault, Python SDK):

    from harness import Sandbox, endpoint, int64, string

    with Sandbox() as sb:                       # or the `sandbox` pytest fixture
        fn = sb.testfn()                        # build/test/fn/testfn on a unix socket
        rt = sb.runtime(endpoints=[endpoint("test/*", fn)])
        cl = rt.client()
        cl.send("test/counter", "a", int64(2))
        assert cl.call("test/counter", "a", int64(1)) == 3
        rt.kill9(); rt.start()                  # same data dir, waits for event=runtime.ready
        assert cl.int_state("test/counter", "a") == 3
    # leaving the sandbox: runtimes get SIGTERM and must exit 0 (ASan leak
    # reports make the exit code non-zero), every other process is killed.

Pieces:
  Runtime         statemeshd: config from kwargs, start / stop (SIGTERM, exit 0
                  checked) / kill9 / restart on the same data dir, stderr in a
                  file of the work dir (`log()`, `full_log()`).
  FunctionServer  any function-server command given a listen address: start,
                  wait for the socket, kill9, stop, restart.
  Client          ingress + admin + health over one channel: send, call,
                  get_state, state, int_state, stats, health; status_of().
  int64/string/.. TypedValue builders; decode() turns one back into Python.
  free_port, wait_until, timeout_scale, binary.

Environment:
  STATEMESH_BUILD          directory of the binaries (default <repo>/build)
  STATEMESH_TIMEOUT_SCALE  multiply every timeout (default 1, or 3 when the
                           runtime binary is built with AddressSanitizer)
  STATEMESH_TMP            parent of the sandboxes' work dirs (default /tmp;
                           keep it short: unix socket paths are <= 107 bytes)
  STATEMESH_KEEP_TMP=1     never delete work dirs

Every wait is bounded; every process started here is killed at teardown and,
as a last resort, at interpreter exit.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import grpc

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUILD = Path(os.environ.get("STATEMESH_BUILD") or (REPO / "build")).resolve()
SDK_PYTHON = REPO / "sdk-python"
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

# ---------------------------------------------------------------------------
# generated protobuf stubs (sdk-python/statemesh/v1/*_pb2.py, made by `make`)
# ---------------------------------------------------------------------------

_STUBS = ("types_pb2", "ingress_pb2", "ingress_pb2_grpc", "admin_pb2", "admin_pb2_grpc",
          "function_pb2", "function_pb2_grpc")


def _load_stubs():
    def attempt():
        importlib.invalidate_caches()
        return {name: importlib.import_module("statemesh.v1." + name) for name in _STUBS}

    if SDK_PYTHON.is_dir() and str(SDK_PYTHON) not in sys.path:
        sys.path.append(str(SDK_PYTHON))
    try:
        return attempt()
    except ImportError:
        pass
    except Exception:
        # The SDK package itself failed to import (work in progress?): load the
        # stubs through a bare namespace package instead of its __init__.
        for name in [m for m in sys.modules if m == "statemesh" or m.startswith("statemesh.")]:
            del sys.modules[name]
        pkg = types.ModuleType("statemesh")
        pkg.__path__ = [str(SDK_PYTHON / "statemesh")]
        sys.modules["statemesh"] = pkg
        return attempt()
    # Not generated yet: make them (the same rule `make all` uses).
    targets = ["sdk-python/statemesh/v1/%s.py" % n for n in _STUBS if not n.endswith("_grpc")]
    targets.append("sdk-python/statemesh/_version.py")
    subprocess.run(["make", "-C", str(REPO), "--no-print-directory"] + targets,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120, check=True)
    return attempt()


_m = _load_stubs()
types_pb2 = _m["types_pb2"]
ingress_pb2 = _m["ingress_pb2"]
ingress_pb2_grpc = _m["ingress_pb2_grpc"]
admin_pb2 = _m["admin_pb2"]
admin_pb2_grpc = _m["admin_pb2_grpc"]
function_pb2 = _m["function_pb2"]
function_pb2_grpc = _m["function_pb2_grpc"]
# Directory to put on PYTHONPATH of Python child processes so they find the stubs.
STUBS_PATH = str(Path(types_pb2.__file__).resolve().parents[2])
del _m

# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def binary(name: str) -> Path:
    """Path of a built binary, e.g. binary("statemeshd"), binary("test/fn/testfn")."""
    return BUILD / name


_scale: Optional[float] = None


def timeout_scale() -> float:
    """Factor for every timeout: STATEMESH_TIMEOUT_SCALE, else 3 under ASan, else 1."""
    global _scale
    if _scale is not None:
        return _scale
    env = os.environ.get("STATEMESH_TIMEOUT_SCALE")
    if env:
        _scale = float(env)
        return _scale
    path = binary("statemeshd")
    if not path.exists():
        return 1.0          # not cached: decide again once the binary exists
    try:
        with open(path, "rb") as f:
            _scale = 3.0 if b"__asan_init" in f.read() else 1.0
    except OSError:
        _scale = 1.0
    return _scale


def scaled(seconds: float) -> float:
    return seconds * timeout_scale()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               message: str = "", scale: bool = True) -> Any:
    """Polls pred() until it returns something truthy and returns that.

    Raises TimeoutError after `timeout` seconds (scaled by timeout_scale()
    unless scale=False) naming `message` and the last value or exception.
    Exceptions raised by pred count as "not yet".
    """
    limit = scaled(timeout) if scale else timeout
    deadline = time.monotonic() + limit
    last: Any = None
    while True:
        try:
            value = pred()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - transient errors are "not yet"
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s (last: %r)"
                               % (limit, message or getattr(pred, "__name__", "condition"), last))
        time.sleep(interval)


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------
# typed values
# ---------------------------------------------------------------------------

T_BOOL, T_INT64, T_FLOAT64 = "statemesh/bool", "statemesh/int64", "statemesh/float64"
T_STRING, T_BYTES, T_JSON = "statemesh/string", "statemesh/bytes", "statemesh/json"


def typed(typename: str, value: bytes) -> "types_pb2.TypedValue":
    return types_pb2.TypedValue(typename=typename, value=value)


def int64(k: int):
    return typed(T_INT64, struct.pack("<q", k))


def string(s: str):
    return typed(T_STRING, s.encode("utf-8"))


def raw_bytes(b: bytes):
    return typed(T_BYTES, b)


def boolean(v: bool):
    return typed(T_BOOL, b"\x01" if v else b"\x00")


def float64(x: float):
    return typed(T_FLOAT64, struct.pack("<d", x))


def json_value(obj: Any):
    return typed(T_JSON, json.dumps(obj).encode("utf-8"))


def as_value(v: Any):
    """TypedValue from a TypedValue, bool, int, float, str, bytes; None stays None."""
    if v is None or isinstance(v, types_pb2.TypedValue):
        return v
    if isinstance(v, bool):
        return boolean(v)
    if isinstance(v, int):
        return int64(v)
    if isinstance(v, float):
        return float64(v)
    if isinstance(v, str):
        return string(v)
    if isinstance(v, (bytes, bytearray)):
        return raw_bytes(bytes(v))
    raise TypeError("no typed value for %r" % (v,))


def decode(tv) -> Any:
    """Python value of a built-in TypedValue; user types come back as the TypedValue."""
    if tv is None:
        return None
    t, b = tv.typename, tv.value
    if t == T_INT64:
        if len(b) != 8:
            raise ValueError("statemesh/int64 with %d bytes" % len(b))
        return struct.unpack("<q", b)[0]
    if t == T_STRING:
        return b.decode("utf-8")
    if t == T_BOOL:
        if b not in (b"\x00", b"\x01"):
            raise ValueError("invalid statemesh/bool %r" % b)
        return b == b"\x01"
    if t == T_FLOAT64:
        return struct.unpack("<d", b)[0]
    if t == T_BYTES:
        return b
    if t == T_JSON:
        return json.loads(b.decode("utf-8"))
    return tv


# ---------------------------------------------------------------------------
# process bookkeeping
# ---------------------------------------------------------------------------

_LIVE: "set[subprocess.Popen]" = set()
_LIVE_LOCK = threading.Lock()


def _track(p: subprocess.Popen) -> None:
    with _LIVE_LOCK:
        _LIVE.add(p)


def _untrack(p: subprocess.Popen) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(p)


@atexit.register
def _kill_leftovers() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:  # noqa: BLE001
                pass


def _kill9(p: subprocess.Popen, timeout: float = 10.0) -> Optional[int]:
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = None
    _untrack(p)
    return rc


class _Logged:
    """A child process whose stdout+stderr go to one file in the work dir."""

    def __init__(self, log_path: Path):
        self.log_path = Path(log_path)
        self.proc: Optional[subprocess.Popen] = None
        self._offset = 0
        self.exit_codes: list = []       # one per finished run

    def _spawn(self, argv: list, env: Optional[dict], cwd: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as f:
            self._offset = f.tell()
            self.proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                                         stdout=f, stderr=f, env=env, cwd=str(cwd))
        _track(self.proc)

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.poll() if self.proc else None

    def full_log(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log(self) -> str:
        """Output of the current (or last) run only."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_lines(self, needle: str = "", run_only: bool = False) -> list:
        text = self.log() if run_only else self.full_log()
        return [ln for ln in text.splitlines() if needle in ln]

    def kill9(self, timeout: float = 10.0) -> Optional[int]:
        """SIGKILL and reap. Returns the exit status (-9) or None if it was not running."""
        if self.proc is None:
            return None
        was_alive = self.proc.poll() is None
        rc = _kill9(self.proc, timeout=scaled(timeout))
        self.exit_codes.append(rc)
        return rc if was_alive else None

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Waits for the process to end on its own; kills it and raises on timeout."""
        assert self.proc is not None, "never started"
        try:
            rc = self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            _kill9(self.proc)
            raise AssertionError("%s did not exit within %.0fs; log:\n%s"
                                 % (self.log_path.name, scaled(timeout), tail(self.log())))
        _untrack(self.proc)
        self.exit_codes.append(rc)
        return rc

    def _signal_and_wait(self, sig: int, timeout: float) -> Optional[int]:
        """Returns the exit code, or None when it had to be killed."""
        assert self.proc is not None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            rc = self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            _kill9(self.proc)
            self.exit_codes.append(None)
            return None
        _untrack(self.proc)
        self.exit_codes.append(rc)
        return rc


# ---------------------------------------------------------------------------
# statemeshd
# ---------------------------------------------------------------------------


def _cfg_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v) if -2**31 <= v < 2**31 else "%dL" % v
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, dict):                     # a libconfig group
        return "{ " + " ".join("%s = %s;" % (k, _cfg_value(x)) for k, x in v.items()) + " }"
    if isinstance(v, list):                     # a libconfig list ( ... )
        return "( " + ", ".join(_cfg_value(x) for x in v) + " )"
    raise TypeError("cannot write %r into a config" % (v,))


def endpoint(functions: str, target: Any, **opts: Any) -> dict:
    """One `endpoints` entry. target: "unix:/p", "host:port" or a FunctionServer.
    opts: max_batch, max_in_flight, mode, ... written as given."""
    if isinstance(target, FunctionServer):
        target = target.target
    e = {"functions": functions, "target": target}
    e.update(opts)
    return e


class Runtime(_Logged):
    """One statemeshd process (restartable on the same data dir)."""

    READY = "event=runtime.ready"

    def __init__(self, workdir: Any, endpoints: Iterable[dict] = (), *, name: str = "statemeshd",
                 port: Optional[int] = None, ingress: Optional[str] = None,
                 data_dir: Any = None, log_level: str = "info",
                 max_message_bytes: Optional[int] = None,
                 checkpoint_interval_ms: Optional[int] = None,
                 checkpoint_sync: Optional[bool] = None,
                 runtime_settings: Optional[dict] = None, extra_config: str = "",
                 config_text: Optional[str] = None, env: Optional[dict] = None,
                 args: Iterable[str] = (), binary_path: Any = None):
        self.workdir = Path(workdir)
        super().__init__(self.workdir / (name + ".log"))
        self.name = name
        if ingress is None:
            self.port = port or free_port()
            ingress = "127.0.0.1:%d" % self.port
        else:
            self.port = int(ingress.rsplit(":", 1)[1]) if not ingress.startswith("unix:") else None
        self.ingress = ingress
        self.data_dir = Path(data_dir) if data_dir is not None else self.workdir / (name + "-data")
        self.config_path = self.workdir / (name + ".conf")
        self.endpoints = [dict(e) for e in endpoints]
        self.log_level = log_level
        self.max_message_bytes = max_message_bytes
        self.checkpoint_interval_ms = checkpoint_interval_ms
        self.checkpoint_sync = checkpoint_sync
        self.runtime_settings = dict(runtime_settings or {})
        self.extra_config = extra_config
        self.config_text = config_text
        self.env = env
        self.args = list(args)
        self.binary_path = Path(binary_path) if binary_path else binary("statemeshd")
        self._clients: list = []

    # -- config --
    def render_config(self) -> str:
        if self.config_text is not None:
            return self.config_text
        out = ["# written by test/integration/harness.py", "runtime = {",
               "  data_dir = %s;" % _cfg_value(str(self.data_dir)),
               "  ingress = %s;" % _cfg_value(self.ingress),
               "  log_level = %s;" % _cfg_value(self.log_level)]
        if self.max_message_bytes is not None:
            out.append("  max_message_bytes = %s;" % _cfg_value(self.max_message_bytes))
        cp = []
        if self.checkpoint_interval_ms is not None:
            cp.append("interval_ms = %s;" % _cfg_value(self.checkpoint_interval_ms))
        if self.checkpoint_sync is not None:
            cp.append("sync = %s;" % _cfg_value(self.checkpoint_sync))
        if cp:
            out.append("  checkpoint = { %s };" % " ".join(cp))
        for k, v in self.runtime_settings.items():
            out.append("  %s = %s;" % (k, _cfg_value(v)))
        out.append("};")
        if self.endpoints:
            items = ["  { " + " ".join("%s = %s;" % (k, _cfg_value(v)) for k, v in e.items()) + " }"
                     for e in self.endpoints]
            out.append("endpoints = (")
            out.append(",\n".join(items))
            out.append(");")
        if self.extra_config:
            out.append(self.extra_config)
        return "\n".join(out) + "\n"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config())
        return self.config_path

    # -- lifecycle --
    def start(self, wait: bool = True, timeout: float = 20.0) -> "Runtime":
        assert not self.alive, "%s already running" % self.name
        if not self.binary_path.exists():
            raise FileNotFoundError("%s not built (run make)" % self.binary_path)
        self.write_config()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._spawn([self.binary_path, "-c", self.config_path] + self.args,
                    env=self.env, cwd=self.workdir)
        if wait:
            self.wait_ready(timeout)
            # Channels of existing clients may still hold a connection to the
            # previous process; their first RPC would fail with UNAVAILABLE.
            for c in self._clients:
                c.wait_healthy(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Waits for event=runtime.ready in this run's log; raises if the process dies first."""
        limit = scaled(timeout)
        deadline = time.monotonic() + limit
        while True:
            if self.READY in self.log():
                return
            rc = self.returncode
            if rc is not None:
                _untrack(self.proc)
                self.exit_codes.append(rc)
                raise RuntimeError("%s exited with %s before %s; log:\n%s"
                                   % (self.name, rc, self.READY, tail(self.log())))
            if time.monotonic() >= deadline:
                _kill9(self.proc)
                raise TimeoutError("%s not ready within %.0fs; log:\n%s"
                                   % (self.name, limit, tail(self.log())))
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0, check: bool = True) -> Optional[int]:
        """Graceful stop (SIGTERM: drain, final checkpoint). With check, asserts exit 0."""
        if self.proc is None or (self.proc.poll() is not None and self.proc not in _LIVE):
            return self.returncode
        rc = self._signal_and_wait(sig, timeout)
        if check:
            if rc is None:
                raise AssertionError("%s did not exit within %.0fs of signal %d; log:\n%s"
                                     % (self.name, scaled(timeout), sig, tail(self.log())))
            if rc != 0:
                raise AssertionError("%s exited with %d after signal %d (ASan/leak report?); log:\n%s"
                                     % (self.name, rc, sig, tail(self.log(), 120)))
        return rc

    def restart(self, wait: bool = True) -> "Runtime":
        if self.alive:
            self.stop()
        return self.start(wait=wait)

    # -- clients --
    def client(self, **kw: Any) -> "Client":
        """A new Client to this runtime's ingress (closed at sandbox teardown)."""
        c = Client(self.ingress, **kw)
        self._clients.append(c)
        return c

    def close_clients(self) -> None:
        for c in self._clients:
            c.close()
        self._clients.clear()

    def __repr__(self) -> str:
        return "Runtime(%s, ingress=%s, pid=%s)" % (self.name, self.ingress, self.pid)


# ---------------------------------------------------------------------------
# function servers
# ---------------------------------------------------------------------------


class FunctionServer(_Logged):
    """A function-server process listening on `listen` (default unix:<workdir>/<name>.sock).

    argv may contain "{listen}"; otherwise [listen_flag, listen] is appended.
    """

    def __init__(self, workdir: Any, argv: Iterable[Any], *, name: str = "fn",
                 listen: Optional[str] = None, listen_flag: str = "--listen",
                 env: Optional[dict] = None):
        self.workdir = Path(workdir)
        super().__init__(self.workdir / (name + ".log"))
        self.name = name
        self.listen = listen or "unix:%s" % (self.workdir / (name + ".sock"))
        self.argv = [str(a) for a in argv]
        self.listen_flag = listen_flag
        self.env = env

    @property
    def target(self) -> str:
        """gRPC target for an endpoint's `target` setting."""
        return self.listen

    @property
    def socket_path(self) -> Optional[Path]:
        return Path(self.listen[len("unix:"):]) if self.listen.startswith("unix:") else None

    def command(self) -> list:
        if any("{listen}" in a for a in self.argv):
            return [a.replace("{listen}", self.listen) for a in self.argv]
        return self.argv + [self.listen_flag, self.listen]

    def start(self, wait: bool = True, timeout: float = 15.0) -> "FunctionServer":
        assert not self.alive, "%s already running" % self.name
        exe = Path(self.argv[0])
        if exe.is_absolute() and not exe.exists():
            raise FileNotFoundError("%s not built (run make)" % exe)
        sp = self.socket_path
        if sp is not None:
            try:
                sp.unlink()          # stale after kill -9; lets wait_listening see the new one
            except FileNotFoundError:
                pass
        self._spawn(self.command(), env=self.env, cwd=self.workdir)
        if wait:
            self.wait_listening(timeout)
        return self

    def _connectable(self) -> bool:
        sp = self.socket_path
        if sp is not None:
            if not sp.exists():
                return False
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(0.5)
                s.connect(str(sp))
                return True
            except OSError:
                return False
            finally:
                s.close()
        host, port = self.listen.rsplit(":", 1)
        return port_open(host.strip("[]") or "127.0.0.1", int(port))

    def wait_listening(self, timeout: float = 15.0) -> None:
        limit = scaled(timeout)
        deadline = time.monotonic() + limit
        while not self._connectable():
            rc = self.returncode
            if rc is not None:
                _untrack(self.proc)
                self.exit_codes.append(rc)
                raise RuntimeError("%s exited with %s before listening on %s; log:\n%s"
                                   % (self.name, rc, self.listen, tail(self.log())))
            if time.monotonic() >= deadline:
                _kill9(self.proc)
                raise TimeoutError("%s not listening on %s within %.0fs; log:\n%s"
                                   % (self.name, self.listen, limit, tail(self.log())))
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0, check: bool = False) -> Optional[int]:
        if self.proc is None or (self.proc.poll() is not None and self.proc not in _LIVE):
            return self.returncode
        rc = self._signal_and_wait(sig, timeout)
        if check and rc != 0:
            raise AssertionError("%s exited with %s; log:\n%s" % (self.name, rc, tail(self.log(), 120)))
        return rc

    def restart(self, wait: bool = True) -> "FunctionServer":
        if self.alive:
            self.kill9()
        return self.start(wait=wait)

    def __repr__(self) -> str:
        return "FunctionServer(%s, listen=%s, pid=%s)" % (self.name, self.listen, self.pid)


def python_env(extra: Optional[dict] = None) -> dict:
    """Environment for a Python child: the stubs (and the SDK) on PYTHONPATH."""
    env = dict(os.environ)
    paths = [STUBS_PATH, str(SDK_PYTHON), str(HERE)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


# ---------------------------------------------------------------------------
# ingress / admin client
# ---------------------------------------------------------------------------

CHANNEL_OPTIONS = [
    # Reconnect fast after a runtime restart (the default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.max_send_message_length", 128 << 20),
    ("grpc.max_receive_message_length", 128 << 20),
]


def status_of(fn: Callable, *args: Any, **kw: Any) -> grpc.StatusCode:
    """Runs fn and returns grpc.StatusCode.OK or the code of the RpcError it raised."""
    try:
        fn(*args, **kw)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def address(type_: Optional[str], id_: Optional[str]):
    if type_ is None and id_ is None:
        return None
    return types_pb2.Address(type=type_ or "", id=id_ or "")


class Client:
    """Ingress, Admin and Health over one insecure channel. Methods raise grpc.RpcError.

    wait_for_ready (default on): an RPC issued while the runtime is down waits
    for it (up to its deadline) instead of failing at once. Besides being what a
    patient client does, this matters with grpcio: a fail-fast channel whose
    server restarted can take seconds to notice its reconnection completed,
    because nothing polls the connecting socket.
    """

    def __init__(self, target: str, timeout: float = 10.0, options: Optional[list] = None,
                 wait_for_ready: bool = True):
        self.target = target
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self.channel = grpc.insecure_channel(target, options=(options or CHANNEL_OPTIONS))
        self.ingress = ingress_pb2_grpc.IngressStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)
        self._health = self.channel.unary_unary("/grpc.health.v1.Health/Check",
                                                request_serializer=None, response_deserializer=None)

    def _t(self, timeout: Optional[float]) -> float:
        return scaled(self.timeout if timeout is None else timeout)

    # -- ingress --
    def send_request(self, type_: Optional[str], id_: Optional[str], value: Any):
        req = ingress_pb2.SendRequest()
        a = address(type_, id_)
        if a is not None:
            req.target.CopyFrom(a)
        v = as_value(value)
        if v is not None:
            req.argument.CopyFrom(v)
        return req

    def send(self, type_: Optional[str], id_: Optional[str], value: Any,
             timeout: Optional[float] = None) -> None:
        """Durable fire-and-forget. value: TypedValue/int/str/bytes/bool/float; None = no argument."""
        self.ingress.Send(self.send_request(type_, id_, value), timeout=self._t(timeout),
                          wait_for_ready=self.wait_for_ready)

    def send_future(self, type_: Optional[str], id_: Optional[str], value: Any,
                    timeout: Optional[float] = None):
        return self.ingress.Send.future(self.send_request(type_, id_, value), timeout=self._t(timeout),
                                        wait_for_ready=self.wait_for_ready)

    def call_raw(self, type_: Optional[str], id_: Optional[str], value: Any,
                 timeout: Optional[float] = None):
        """Call; returns the reply TypedValue."""
        req = ingress_pb2.CallRequest()
        a = address(type_, id_)
        if a is not None:
            req.target.CopyFrom(a)
        v = as_value(value)
        if v is not None:
            req.argument.CopyFrom(v)
        return self.ingress.Call(req, timeout=self._t(timeout), wait_for_ready=self.wait_for_ready).reply

    def call(self, type_: Optional[str], id_: Optional[str], value: Any,
             timeout: Optional[float] = None) -> Any:
        """Call; returns the decoded reply (see decode())."""
        return decode(self.call_raw(type_, id_, value, timeout))

    # -- admin --
    def get_state(self, type_: str, id_: str, name: str = "", timeout: Optional[float] = None):
        """GetStateResponse: values, queued_messages, in_flight."""
        req = admin_pb2.GetStateRequest(name=name)
        req.address.CopyFrom(types_pb2.Address(type=type_, id=id_))
        return self.admin.GetState(req, timeout=self._t(timeout), wait_for_ready=self.wait_for_ready)

    def state(self, type_: str, id_: str, timeout: Optional[float] = None) -> dict:
        """Committed state of an address: {name: decoded value} (absent values omitted)."""
        resp = self.get_state(type_, id_, timeout=timeout)
        return {v.name: decode(v.value) for v in resp.values if v.HasField("value")}

    def int_state(self, type_: str, id_: str, name: str = "n", default: int = 0,
                  timeout: Optional[float] = None) -> int:
        v = self.state(type_, id_, timeout=timeout).get(name)
        return default if v is None else v

    def stats(self, timeout: Optional[float] = None) -> dict:
        resp = self.admin.Stats(admin_pb2.StatsRequest(), timeout=self._t(timeout),
                                wait_for_ready=self.wait_for_ready)
        return {s.name: s.value for s in resp.stats}

    def queued(self, timeout: Optional[float] = None) -> int:
        return self.stats(timeout)["queued_messages"]

    def wait_drained(self, timeout: float = 60.0) -> None:
        """Waits until Stats reports queued_messages == 0."""
        wait_until(lambda: self.queued(timeout=5) == 0, timeout, interval=0.05,
                   message="queued_messages == 0")

    # -- health --
    def health_raw(self, timeout: Optional[float] = None,
                   wait_for_ready: Optional[bool] = None) -> bytes:
        wfr = self.wait_for_ready if wait_for_ready is None else wait_for_ready
        return self._health(b"", timeout=self._t(timeout), wait_for_ready=wfr)

    def healthy(self, timeout: Optional[float] = None, wait_for_ready: Optional[bool] = None) -> bool:
        """True when grpc.health.v1 Check says SERVING."""
        try:
            return self.health_raw(timeout, wait_for_ready) == b"\x08\x01"
        except grpc.RpcError:
            return False

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Waits until Health/Check answers SERVING (reconnecting the channel if needed)."""
        wait_until(lambda: self.healthy(timeout=2, wait_for_ready=True), timeout, interval=0.05,
                   message="%s SERVING" % self.target)

    def close(self) -> None:
        try:
            self.channel.close()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------
# load generator
# ---------------------------------------------------------------------------


class SendLoad:
    """Client threads sending Sends to random targets, counting outcomes per target.

    targets: list of (type, id, value). Each thread has its own channel and
    sends until stop(); an RPC error counts as failed (nothing is retried) and
    the thread pauses `pause_on_error` seconds before going on. After stop(),
    acked[i] / failed[i] are the totals for targets[i]:
        acked[i] <= applied <= acked[i] + failed[i]   (exactly-once, nothing lost)
    """

    def __init__(self, ingress: str, targets: list, threads: int = 4, seed: int = 0,
                 timeout: float = 5.0, pause_on_error: float = 0.01, wait_for_ready: bool = True):
        self.ingress = ingress
        self.targets = list(targets)
        self.nthreads = threads
        self.seed = seed
        self.timeout = timeout
        self.pause_on_error = pause_on_error
        self.wait_for_ready = wait_for_ready
        n = len(self.targets)
        self._acked = [[0] * n for _ in range(threads)]
        self._failed = [[0] * n for _ in range(threads)]
        self._codes: dict = {}
        self._stop = threading.Event()
        self._threads: list = []
        self.errors: list = []

    def _run(self, t: int) -> None:
        import random
        rnd = random.Random(self.seed * 1000 + t)
        cl = Client(self.ingress, timeout=self.timeout)
        try:
            reqs = [cl.send_request(ty, i, v) for ty, i, v in self.targets]
            send = cl.ingress.Send
            a, f = self._acked[t], self._failed[t]
            to = scaled(self.timeout)
            while not self._stop.is_set():
                k = rnd.randrange(len(reqs))
                try:
                    send(reqs[k], timeout=to, wait_for_ready=self.wait_for_ready)
                    a[k] += 1
                except grpc.RpcError as e:
                    f[k] += 1
                    code = e.code()
                    self._codes[code] = self._codes.get(code, 0) + 1
                    self._stop.wait(self.pause_on_error)
        except Exception as e:  # noqa: BLE001
            self.errors.append(e)
        finally:
            cl.close()

    def start(self) -> "SendLoad":
        for t in range(self.nthreads):
            th = threading.Thread(target=self._run, args=(t,), daemon=True,
                                  name="sendload-%d" % t)
            self._threads.append(th)
            th.start()
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + scaled(timeout)
        for th in self._threads:
            th.join(max(0.0, deadline - time.monotonic()))
        alive = [th.name for th in self._threads if th.is_alive()]
        if alive:
            raise AssertionError("load threads did not stop: %s" % alive)
        if self.errors:
            raise AssertionError("load threads raised: %r" % self.errors)

    @property
    def acked(self) -> list:
        return [sum(col) for col in zip(*self._acked)]

    @property
    def failed(self) -> list:
        return [sum(col) for col in zip(*self._failed)]

    def total_acked(self) -> int:
        return sum(sum(a) for a in self._acked)

    def total_failed(self) -> int:
        return sum(sum(f) for f in self._failed)

    def failure_codes(self) -> dict:
        return {str(k): v for k, v in self._codes.items()}

    def wait_acks(self, more: int, timeout: float = 30.0, message: str = "") -> None:
        """Waits until `more` further Sends have been acknowledged."""
        goal = self.total_acked() + more
        wait_until(lambda: self.total_acked() >= goal, timeout, interval=0.01,
                   message=message or "%d more acks" % more)

    def __enter__(self) -> "SendLoad":
        return self.start()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.stop()
        else:
            self._stop.set()


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def run_cli(args: Iterable[Any], address: Optional[str] = None, timeout: float = 30.0,
            input: Optional[str] = None) -> subprocess.CompletedProcess:
    """Runs build/statemesh [--address A] ARGS...; returns the CompletedProcess (text)."""
    exe = binary("statemesh")
    if not exe.exists():
        raise FileNotFoundError("%s not built (run make)" % exe)
    argv = [str(exe)]
    if address is not None:
        argv += ["--address", address]
    argv += [str(a) for a in args]
    return subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=scaled(timeout))


# ---------------------------------------------------------------------------
# sandbox: one work dir and everything started in it
# ---------------------------------------------------------------------------


class Sandbox:
    """A short temporary work dir plus the processes and clients started in it.

    close() stops every runtime with SIGTERM and checks it exited 0, kills every
    function server, closes clients, and removes the work dir (unless keep).
    It raises AssertionError if a runtime did not exit cleanly.
    """

    def __init__(self, workdir: Any = None, prefix: str = "sm-"):
        if workdir is None:
            parent = os.environ.get("STATEMESH_TMP", "/tmp")
            workdir = tempfile.mkdtemp(prefix=prefix, dir=parent)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.runtimes: list = []
        self.servers: list = []
        self.clients: list = []
        self.keep = bool(os.environ.get("STATEMESH_KEEP_TMP"))

    def path(self, name: str) -> Path:
        return self.workdir / name

    def runtime(self, endpoints: Iterable[dict] = (), start: bool = True, **kw: Any) -> Runtime:
        name = kw.pop("name", None) or ("statemeshd" if not self.runtimes
                                        else "statemeshd%d" % len(self.runtimes))
        rt = Runtime(self.workdir, endpoints, name=name, **kw)
        self.runtimes.append(rt)
        if start:
            rt.start()
        return rt

    def server(self, argv: Iterable[Any], name: str = "fn", start: bool = True,
               **kw: Any) -> FunctionServer:
        fs = FunctionServer(self.workdir, argv, name=name, **kw)
        self.servers.append(fs)
        if start:
            fs.start()
        return fs

    def testfn(self, name: str = "testfn", slow_ms: Optional[int] = None, start: bool = True,
               extra_args: Iterable[str] = (), **kw: Any) -> FunctionServer:
        """build/test/fn/testfn (test/counter, echo, slow, forward, fail, order)."""
        argv = [str(binary("test/fn/testfn"))]
        if slow_ms is not None:
            argv += ["--slow-ms", str(slow_ms)]
        argv += list(extra_args)
        return self.server(argv, name=name, start=start, **kw)

    def greeter(self, name: str = "greeter", start: bool = True, **kw: Any) -> FunctionServer:
        """build/examples/greeter/greeter (example/user -> example/greeter)."""
        return self.server([str(binary("examples/greeter/greeter"))], name=name, start=start, **kw)

    def python_server(self, script: Any, args: Iterable[Any] = (), name: str = "pyfn",
                      start: bool = True, **kw: Any) -> FunctionServer:
        """A Python function server script run with /usr/bin/python3 and the stubs on PYTHONPATH."""
        env = python_env(kw.pop("env", None))
        script = Path(script)
        if not script.is_absolute():
            script = HERE / script          # relative to test/integration/
        return self.server([PYTHON, str(script)] + [str(a) for a in args], name=name,
                           start=start, env=env, **kw)

    def client(self, target: Any, **kw: Any) -> Client:
        c = Client(target.ingress if isinstance(target, Runtime) else target, **kw)
        self.clients.append(c)
        return c

    def logs(self, lines: int = 60) -> str:
        parts = []
        for p in self.runtimes + self.servers:
            parts.append("----- %s (%s) -----\n%s" % (p.name, p.log_path, tail(p.full_log(), lines)))
        return "\n".join(parts)

    def close(self, check: bool = True, remove: bool = True) -> None:
        errors = []
        for c in self.clients:
            c.close()
        for rt in self.runtimes:
            rt.close_clients()
            try:
                rt.stop(check=check)
            except AssertionError as e:
                errors.append(str(e))
            finally:
                if rt.proc is not None and rt.proc.poll() is None:
                    _kill9(rt.proc)
        for fs in self.servers:
            if fs.proc is not None and fs.proc.poll() is None:
                fs.stop(timeout=3)
        if remove and not self.keep and not errors:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise AssertionError("\n\n".join(errors))

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.close(check=exc_type is None, remove=exc_type is None)
