#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: first installs what the
# tests need from Debian's packages (only what is missing: Chromium and
# ChromeDriver for the browser tests, etcd for the cluster tests, Prometheus
# and dig for the ecosystem tests, make for jemalloc's build), then
# `cargo test`.
#
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh -p rollcall-registry   # extra arguments go to cargo test
#
# Needs: Debian or Ubuntu with apt-get, run as root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package providing it
declare -A NEEDED=(
  [chromium]=chromium
  [chromedriver]=chromium-driver
  [etcd]=etcd-server
  [prometheus]=prometheus
  [dig]=bind9-dnsutils
  [make]=make
)

missing=()
for cmd in "${!NEEDED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
done

if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
fi

exec cargo test --workspace "$@"
