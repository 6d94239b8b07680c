#!/usr/bin/env bash
# Make sure the default dataset (Fashion-MNIST, Debian package dataset-fashion-mnist) is present.
# Installs it with apt-get when it is missing and apt-get is usable; otherwise says how to get it.
# Other datasets named in params.yaml are checked by their prepare stage, which names what is missing.
set -euo pipefail
dir=/usr/share/datasets/fashion-mnist
files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
missing() { for f in $files; do [ -s "$dir/$f" ] || return 0; done; return 1; }
if ! missing; then
    echo "Fashion-MNIST: present in $dir"
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
if command -v apt-get >/dev/null 2>&1 && { [ -z "$sudo" ] || sudo -n true 2>/dev/null; }; then
    echo "Fashion-MNIST: installing the Debian package dataset-fashion-mnist"
    $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
        || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null; }
fi
if missing; then
    cat >&2 <<MSG
Fashion-MNIST is missing from $dir and could not be installed automatically.
Get it in one of these ways, then run 'make repro' again:
  - Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist
  - any machine with internet: set 'download: true' under datasets.fmnist in params.yaml
  - or copy the four files ($files) into a folder and set datasets.fmnist.root to it
MSG
    exit 1
fi
echo "Fashion-MNIST: installed in $dir"
