#!/usr/bin/env bash
# Make sure OpenSSH's server (`sshd`, Debian package openssh-server) is present: tests/test_remote.py
# starts a throwaway sshd on 127.0.0.1 to test a real SSH remote for DVC. Only the binary is needed;
# the test writes its own config and keys in a temporary directory and never uses the system service.
# Installs it with apt-get when it is missing and apt-get is usable; otherwise says how to get it.
set -euo pipefail
find_sshd() { command -v sshd 2>/dev/null || { [ -x /usr/sbin/sshd ] && echo /usr/sbin/sshd; }; }
if path=$(find_sshd); then
    echo "sshd: present at $path"
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
if command -v apt-get >/dev/null 2>&1 && { [ -z "$sudo" ] || sudo -n true 2>/dev/null; }; then
    echo "sshd: installing the Debian package openssh-server"
    install() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server >/dev/null 2>&1; }
    install || { $sudo apt-get update -q >/dev/null && install; } || true
fi
if ! path=$(find_sshd); then
    cat >&2 <<MSG
OpenSSH's server (sshd) is missing and could not be installed automatically.
tests/test_remote.py needs the binary (it starts its own sshd on 127.0.0.1; no system service is used).
Install it, then run 'make test' again:
  - Debian/Ubuntu: sudo apt-get install openssh-server
  - Fedora/RHEL: sudo dnf install openssh-server
MSG
    exit 1
fi
echo "sshd: installed at $path"
