#!/usr/bin/env bash
# Installs the system packages edgerec builds and tests with, when missing.
# Usage: scripts/deps.sh [build|test]   (test adds the tools the tests use as peers)
set -euo pipefail
want=(gcc libc6-dev make pkg-config libasound2-dev alsa-utils)
if [ "${1:-build}" = test ]; then
  want+=(sox util-linux procps flac ffmpeg lame systemd file python3-prometheus-client)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# The toolchain comes with the machine (rustup); make sure it is on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  echo "deps: add \$HOME/.cargo/bin to PATH" >&2
fi
command -v cargo >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/cargo" ] || {
  echo "deps: no cargo found; install the Rust toolchain (rustup) first" >&2; exit 1; }
