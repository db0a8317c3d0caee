#!/usr/bin/env bash
# The appliance checks CI runs (scripts/test.sh calls `scripts/appliance.sh all`): systemd
# units, the Yocto layer's lint, the Debian package and its install check, the aarch64
# cross-build with its unit tests under qemu. Each step prints how long it took.
# `builds` makes only the two release builds (the .deb, the aarch64 check build): CI runs
# it at the lowest priority beside the tests, then `all` finds them built.
# Usage: scripts/appliance.sh all|units|layer|deb|cross|builds
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
  # The test build's command: the same features, so after it nothing is rebuilt.
  cargo build --workspace --all-targets --locked -q
  cp "${CARGO_TARGET_DIR:-target}/debug/edgerec" "$root/usr/bin/edgerec"
  for u in "${units[@]}"; do cp "$files/$u" "$root/usr/lib/systemd/system/$u"; done
  local out
  out=$(systemd-analyze verify --root="$root" "${units[@]}" 2>&1) || { echo "$out"; return 1; }
  rm -rf "$root" "$root.log"
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

# The Debian package: built with cargo-deb, installed into a scratch root with
# `dpkg --root` (maintainer scripts run chrootless with DPKG_ROOT set), then its files,
# modes and owners, the user, the state directory, a reinstall and a removal checked.
check_deb() {
  need_apt systemd
  need_cargo_deb
  # DEB=path checks a package already built (cargo deb takes minutes: an LTO release).
  local deb=${DEB:-}
  [ -n "$deb" ] || deb=$(cargo deb -p edgerec --locked 2>/dev/null | tail -n 1)
  [ -f "$deb" ] || { echo "cargo deb made no package"; return 1; }
  echo "package: $deb ($(stat -c %s "$deb") bytes)"
  dpkg-deb -c "$deb" | awk '{print $1, $2, $6}'
  local root; root=$(mktemp -d)
  mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/etc"
  touch "$root/var/lib/dpkg/status"
  # A box's accounts before the install: group audio exists, user edgerec does not.
  grep -v '^edgerec:' /etc/passwd > "$root/etc/passwd"
  sed -E 's/^(audio:[^:]*:[0-9]+:).*/\1/' /etc/group | grep -v '^edgerec:' > "$root/etc/group"
  local dpkg=(dpkg --root="$root" --force-script-chrootless --force-depends --log=/dev/null)
  "${dpkg[@]}" -i "$deb" >/dev/null 2>"$root.log" || { cat "$root.log"; return 1; }
  "${dpkg[@]}" -i "$deb" >/dev/null 2>"$root.log" || { cat "$root.log"; return 1; }  # again: idempotent
  expect_file "$root" usr/bin/edgerec 755 root root
  expect_file "$root" etc/edgerec/edgerec.toml 644 root root
  for u in "${units[@]}"; do expect_file "$root" "lib/systemd/system/$u" 644 root root; done
  expect_file "$root" lib/udev/rules.d/90-edgerec.rules 644 root root
  expect_file "$root" usr/lib/sysusers.d/edgerec.conf 644 root root
  expect_file "$root" usr/lib/tmpfiles.d/edgerec.conf 644 root root
  expect_file "$root" var/lib/edgerec 750 edgerec audio
  grep -qx /etc/edgerec/edgerec.toml "$root/var/lib/dpkg/info/edgerec.conffiles"
  grep -Eq '^audio:[^:]*:[0-9]+:(.*,)?edgerec(,|$)' "$root/etc/group" || { echo "edgerec is not in group audio"; return 1; }
  [ "$(grep -c '^edgerec:' "$root/etc/passwd")" = 1 ] || { echo "user edgerec: not exactly one"; return 1; }
  "$root/usr/bin/edgerec" --version
  echo recorded > "$root/var/lib/edgerec/keep"
  "${dpkg[@]}" --purge edgerec >/dev/null 2>"$root.log" || { cat "$root.log"; return 1; }
  [ -f "$root/var/lib/edgerec/keep" ] || { echo "purge removed the state directory"; return 1; }
  [ ! -e "$root/usr/bin/edgerec" ] || { echo "purge left the binary"; return 1; }
  rm -rf "$root" "$root.log"
}

# expect_file ROOT PATH MODE USER GROUP: owners by name in the root's own account files.
expect_file() {
  local root=$1 path=$2 mode=$3 user=$4 group=$5
  [ -e "$root/$path" ] || { echo "missing: /$path"; return 1; }
  local got uid gid
  read -r got uid gid < <(stat -c '%a %u %g' "$root/$path")
  local want_uid want_gid
  want_uid=$(awk -F: -v n="$user" '$1 == n {print $3}' "$root/etc/passwd")
  want_gid=$(awk -F: -v n="$group" '$1 == n {print $3}' "$root/etc/group")
  if [ "$got $uid $gid" != "$mode $want_uid $want_gid" ]; then
    echo "/$path: mode $got uid $uid gid $gid, want $mode $user($want_uid) $group($want_gid)"; return 1
  fi
  echo "ok /$path $mode $user:$group"
}

need_cargo_deb() {
  command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked --version 3.8.0
}

# The aarch64 build and the library's unit tests under qemu-user. The build is the check
# profile (scripts/cross.sh): it proves the target compiles and links; the .deb is the
# release profile.
check_cross() {
  CROSS_PROFILE=check scripts/cross.sh aarch64
}

# The two release builds alone; after them check_deb and check_cross rebuild nothing
# (cargo deb only repackages). They use separate profile directories, so they run side
# by side: each spends minutes in a one-thread link-time optimisation.
build_deb() {
  need_cargo_deb
  local log; log=$(mktemp)
  cargo deb -p edgerec --locked >"$log" 2>&1 || { cat "$log"; rm -f "$log"; return 1; }
  tail -n 1 "$log"; rm -f "$log"
}
build_cross() {
  CROSS_PROFILE=check CROSS_SKIP_TESTS=1 scripts/cross.sh aarch64
}
builds() {
  local out status=0 deb cross; out=$(mktemp -d)
  step build-deb build_deb >"$out/deb" 2>&1 & deb=$!
  step build-cross build_cross >"$out/cross" 2>&1 & cross=$!
  wait "$deb" || status=1
  wait "$cross" || status=1
  cat "$out/deb" "$out/cross"; rm -rf "$out"
  return "$status"
}

case "${1:-all}" in
  units) step units check_units ;;
  layer) step layer check_layer ;;
  deb) step deb check_deb ;;
  cross) step cross check_cross ;;
  all) step units check_units; step layer check_layer; step deb check_deb; step cross check_cross ;;
  builds) builds ;;
  *) echo "usage: $0 all|units|layer|deb|cross|builds" >&2; exit 2 ;;
esac
