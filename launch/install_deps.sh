#!/usr/bin/env bash
# Installs the Debian packages attnres needs, only those that are missing:
# `main` (the default; quickstart.sh) what the binary, its corpus and plots
# need; `test` (test.sh) also what the tests and benchmarks need. Safe to run
# again.
set -euo pipefail
what=${1:-main}
[ "$what" = main ] || [ "$what" = test ] || { echo "install_deps.sh: expected main or test, got '$what'" >&2; exit 2; }

ATTNRES_PACKAGES=(
  build-essential cmake pkg-config
  libopenblas-dev libdnnl-dev libopenmpi-dev openmpi-bin
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libxxhash-dev
  libpython3.11-stdlib  # the default training corpus: /usr/lib/python3.11/*.py
  python3-matplotlib    # tools/plot.py
)
[ "$what" = test ] && ATTNRES_PACKAGES+=(
  libgtest-dev libgmock-dev libbenchmark-dev
  # tests/multihost and tests/slurm (docs/CLUSTER.md): namespace hosts, their
  # firewall counters, and a local SLURM cluster (no daemon is started here)
  iproute2 nftables procps munge slurmctld slurmd slurm-client
)

missing=()
for p in "${ATTNRES_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "attnres: installing missing packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
