"""A throwaway OpenSSH server on 127.0.0.1, for testing a real SSH remote of DVC.

    with sshd_server(tmp_path / "sshd") as server:
        dvc remote add -d shared  server.url + "/srv/dvc"
        dvc remote modify --local shared keyfile  server.keyfile

Everything lives in the given directory: a host key and a user key made with ssh-keygen, an
authorized_keys holding the user key, an sshd_config, the pid file and sshd's log, and `home/`, a
HOME for the clients under test whose .ssh/known_hosts lists this server's host key (so OpenSSH's
`ssh` and asyncssh, which DVC uses, can check the host key without prompting; nothing is written to
the real ~/.ssh). The server runs in the foreground (`sshd -D -e`) as the current user (root
included: root may log in by key only), serves SFTP in-process (internal-sftp), and is terminated
when the `with` block ends, whether the test passed or not.

`sshd` comes from Debian's openssh-server, which `make test` installs (scripts/ensure_sshd.sh).
"""
from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

HOST = "127.0.0.1"


@dataclass(frozen=True)
class SSHServer:
    user: str
    host: str
    port: int
    keyfile: Path       # private key of `user`, accepted by the server
    known_hosts: Path   # "[127.0.0.1]:PORT <host key>", the entry a client needs to verify the server
    home: Path          # a HOME whose .ssh/known_hosts is `known_hosts` (use it for the clients under test)
    dir: Path
    log: Path           # sshd's own log (-e): why a login was refused

    @property
    def url(self) -> str:
        """URL prefix of a DVC remote on this server: append an absolute path."""
        return f"ssh://{self.user}@{self.host}:{self.port}"

    def ssh_args(self) -> list[str]:
        """OpenSSH client command line (prefix) with strict host-key checking and only our key."""
        return ["ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(self.keyfile),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=10", f"{self.user}@{self.host}"]

    def ssh(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run `command` on the server through the real OpenSSH client (fails on any error)."""
        proc = subprocess.run([*self.ssh_args(), command], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise AssertionError(f"ssh {command!r} failed ({proc.returncode}): {proc.stderr.strip()}\n"
                                 f"sshd log:\n{_tail(self.log)}")
        return proc


def find_sshd() -> str:
    """Absolute path of sshd (it refuses to re-exec from a relative one), or a clear failure."""
    path = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin:/usr/local/sbin:/sbin")
    if path is None:
        raise RuntimeError(
            "OpenSSH's server `sshd` is not installed; tests/test_remote.py needs it to test an SSH remote. "
            "`make test` installs it (scripts/ensure_sshd.sh, Debian package openssh-server); "
            "or run: sudo apt-get install openssh-server")
    return os.path.abspath(path)


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=30)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _privsep_dir(sshd: str, config: Path) -> None:
    """As root, sshd wants its privilege-separation directory (/run/sshd on Debian), which is
    normally made by the system service; create it if missing (it is empty, root-owned, 0755)."""
    check = subprocess.run([sshd, "-t", "-f", str(config)], capture_output=True, text=True, timeout=30)
    m = re.search(r"Missing privilege separation directory: (\S+)", check.stderr)
    if m and os.geteuid() == 0:
        os.makedirs(m.group(1), mode=0o755, exist_ok=True)
        check = subprocess.run([sshd, "-t", "-f", str(config)], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise RuntimeError(f"sshd rejects the test configuration {config}:\n{check.stderr}")


def _wait_ready(proc: subprocess.Popen, port: int, log: Path, timeout: float) -> bool:
    """True once the port answers with an SSH banner; False if sshd exited (e.g. port taken)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not accept connections on {HOST}:{port} within {timeout:.0f} s:\n{_tail(log)}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def sshd_server(directory: Path, startup_timeout: float = 20) -> Iterator[SSHServer]:
    """Start sshd on a free port of 127.0.0.1 with keys and config in `directory`; stop it on exit."""
    sshd = find_sshd()
    d = Path(directory).resolve()
    d.mkdir(parents=True, exist_ok=True)
    user = getpass.getuser()
    host_key, user_key = d / "ssh_host_ed25519_key", d / "id_ed25519"
    _keygen(host_key, "kc-test-host")
    _keygen(user_key, "kc-test-user")
    authorized = d / "authorized_keys"
    authorized.write_text(user_key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    home = d / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    log = d / "sshd.log"

    for attempt in range(5):                      # the free port may be taken between probe and bind
        port = _free_port()
        config = d / "sshd_config"
        config.write_text(f"""\
ListenAddress {HOST}
Port {port}
HostKey {host_key}
AuthorizedKeysFile {authorized}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AllowUsers {user}
PidFile {d / "sshd.pid"}
Subsystem sftp internal-sftp
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
LogLevel VERBOSE
""")
        if attempt == 0:
            _privsep_dir(sshd, config)
        with open(log, "ab") as log_fh:
            proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                    stdout=log_fh, stderr=subprocess.STDOUT)
        try:
            if not _wait_ready(proc, port, log, startup_timeout):
                if "Address already in use" in _tail(log) or "Cannot bind" in _tail(log):
                    continue
                raise RuntimeError(f"sshd exited with code {proc.returncode}:\n{_tail(log)}")
            public = host_key.with_suffix(".pub").read_text().split()
            known_hosts = d / "known_hosts"
            known_hosts.write_text(f"[{HOST}]:{port} {public[0]} {public[1]}\n")
            shutil.copy(known_hosts, home / ".ssh" / "known_hosts")
            yield SSHServer(user=user, host=HOST, port=port, keyfile=user_key, known_hosts=known_hosts,
                            home=home, dir=d, log=log)
            return
        finally:
            _stop(proc)
    raise RuntimeError(f"sshd could not bind a free port on {HOST} after 5 tries:\n{_tail(log)}")
