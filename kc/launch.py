"""Fast stage start-up: stage scripts run in a process forked from a warm server that has torch loaded.

Importing torch and torchvision costs about 3 s of CPU per process, more than most stages compute
on the default. So the first stage of a run starts a small server (this module, ``serve``) that
imports torch, torchvision and numpy once; every stage script then begins with::

    from kc.launch import forward
    forward()          # returns at once inside the server's child; elsewhere hands the script over

and is run by a child forked from the server (copy-on-write: torch is already there), with the
caller's argv, working directory, environment, stdin/stdout/stderr (passed as file descriptors)
and exit status, so DVC sees an ordinary process. kc's own modules are never loaded by the server,
so a stage always runs the code on disk; the server is keyed by the Python executable and the
installed torch and torchvision (an upgrade starts a new one) and exits after two idle minutes.
Signals the caller gets (Ctrl-C, `dvc` stopping) are passed to the child.

KC_FORKSERVER=0 runs stages in their own process as usual. Linux only (elsewhere: as usual). The
server never initialises CUDA, so children use it as a fresh process would.
"""
from __future__ import annotations

import array
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import time

IDLE_SECONDS = 120
PRELOAD = ("torch", "torchvision", "numpy", "yaml")
_CHILD = "KC_FORKSERVER_CHILD"


def enabled() -> bool:
    return (sys.platform.startswith("linux") and os.environ.get("KC_FORKSERVER", "1") != "0"
            and not os.environ.get(_CHILD) and "LOCAL_RANK" not in os.environ)


def _key() -> str:
    """What a server's preloaded state depends on: the interpreter and the installed packages."""
    import importlib.util

    parts = [os.path.realpath(sys.executable), sys.version, os.path.realpath(__file__),
             str(os.stat(__file__).st_mtime_ns)]
    for name in PRELOAD:
        spec = importlib.util.find_spec(name)
        if spec and spec.origin:
            parts += [spec.origin, str(os.stat(spec.origin).st_mtime_ns)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _socket_path() -> str:
    folder = os.path.join(os.environ.get("XDG_RUNTIME_DIR") or "/tmp", f"kc-forkserver-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if os.stat(folder).st_uid != os.getuid() or os.stat(folder).st_mode & 0o077:
        raise OSError(f"{folder} is not a private folder of this user")
    return os.path.join(folder, f"{_key()}.sock")


def _send(sock: socket.socket, data: dict, fds: list[int] = ()) -> None:
    payload = json.dumps(data).encode()
    header = struct.pack("!I", len(payload))
    if fds:
        sock.sendmsg([header + payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.sendall(header + payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


# ------------------------------------------------------------------------------------------------
# Client: the start of every stage script
# ------------------------------------------------------------------------------------------------
def forward(script: str | None = None) -> None:
    """Hand this script over to the fork server and exit with its status; returns when the script
    should run here (inside the server's child, with KC_FORKSERVER=0, or when no server can start)."""
    if not enabled():
        return
    script = os.path.abspath(script or sys.argv[0])
    try:
        path = _socket_path()
        sock = _connect(path)
    except OSError:
        return                                   # no server: run here, the slow way
    code = _run_remote(sock, script)
    sys.exit(code)


def _connect(path: str) -> socket.socket:
    """A connection to the server at ``path``, starting one when there is none (it takes a few
    seconds to load torch)."""
    def attempt():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            return None
    sock = attempt()
    if sock is not None:
        return sock
    _start_server(path)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.02)
        sock = attempt()
        if sock is not None:
            return sock
    raise OSError("the kc fork server did not start")


def _start_server(path: str) -> None:
    """Start the server detached (its own session, no inherited stdio, cwd /), from the installed kc."""
    import subprocess

    with open(path + ".log", "ab") as log:
        subprocess.Popen([sys.executable, "-c", f"from kc.launch import serve; serve({path!r})"], cwd="/",
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
                         env={k: v for k, v in os.environ.items() if k != _CHILD})


def _run_remote(sock: socket.socket, script: str) -> int:
    request = {"script": script, "argv": [script] + sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}
    _send(sock, request, [0, 1, 2])
    child = {"pid": None}

    def relay(signum, frame):
        if child["pid"]:
            try:
                os.kill(child["pid"], signum)
            except ProcessLookupError:
                pass
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, relay)
    try:
        child["pid"] = struct.unpack("!i", _recv_exact(sock, 4))[0]
        return struct.unpack("!i", _recv_exact(sock, 4))[0]
    except EOFError:
        return 1                                 # the child died without reporting (killed)


# ------------------------------------------------------------------------------------------------
# Server
# ------------------------------------------------------------------------------------------------
def serve(path: str) -> None:
    for name in PRELOAD:
        __import__(name)
    import torchvision.models  # noqa: F401  (the models kc builds)
    import torchvision.models.feature_extraction  # noqa: F401
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    server.settimeout(5.0)
    last = time.time()
    children = set()
    try:
        while time.time() - last < IDLE_SECONDS or children:
            for pid in list(children):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    children.discard(pid)
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            last = time.time()
            pid = os.fork()
            if pid == 0:
                server.close()
                _child(conn)                      # never returns
            children.add(pid)
            conn.close()
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def _child(conn: socket.socket) -> None:
    code = 1
    try:
        # the descriptors ride on the first bytes: read them with recvmsg, never with recv
        first, ancillary, _, _ = conn.recvmsg(1 << 16, socket.CMSG_LEN(3 * array.array("i").itemsize))
        while len(first) < 4:
            first += _recv_exact(conn, 4 - len(first))
        size = struct.unpack("!I", first[:4])[0]
        msg = first[4:]
        while len(msg) < size:
            msg += _recv_exact(conn, size - len(msg))
        fds = array.array("i")
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        request = json.loads(msg)
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        conn.sendall(struct.pack("!i", os.getpid()))
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[_CHILD] = "1"
        sys.stdin, sys.stdout, sys.stderr = (open(0, "r", closefd=False), open(1, "w", closefd=False),
                                             open(2, "w", closefd=False))
        sys.argv = request["argv"]
        sys.path[0] = os.path.dirname(request["script"])       # as `python script.py` sets it
        for name in [m for m in sys.modules if m == "kc" or m.startswith("kc.")]:
            del sys.modules[name]                               # the script imports kc as a new process would
        _watch(conn)
        threads = os.environ.get("OMP_NUM_THREADS")
        if threads and threads.isdigit():
            import torch
            torch.set_num_threads(int(threads))
        import runpy
        try:
            runpy.run_path(request["script"], run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        try:
            conn.sendall(struct.pack("!i", code))
        except OSError:
            pass
        os._exit(code)


def _watch(conn: socket.socket) -> None:
    """End this child the way the caller ended, when the caller dies without a signal to pass on
    (SIGKILL): a killed stage must stop writing, as a process of its own would."""
    import threading

    def wait():
        try:
            while conn.recv(1):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=wait, daemon=True).start()


