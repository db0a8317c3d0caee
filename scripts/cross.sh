#!/usr/bin/env bash
# Cross-builds a release `edgerec` for an ARM board with Debian's cross toolchain and the
# target's libasound2-dev (multiarch), then runs the agent library's unit tests and a short
# `record --backend synth` under qemu-user.
# Usage: scripts/cross.sh aarch64|armv7   (CROSS_SKIP_TESTS=1: build only;
#   CROSS_PROFILE=check: the release profile with thin LTO and 16 codegen units: proves
#   the target compiles and links, in less time; not the binary to ship)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
case "${1:-}" in
  aarch64) triple=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu; deb=arm64; qemu=qemu-aarch64 ;;
  armv7) triple=armv7-unknown-linux-gnueabihf; gnu=arm-linux-gnueabihf; deb=armhf; qemu=qemu-arm ;;
  *) echo "usage: $0 aarch64|armv7" >&2; exit 2 ;;
esac
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
want=("gcc-$gnu" "libc6-dev-$deb-cross" qemu-user "libasound2-dev:$deb" pkg-config)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "cross: installing ${missing[*]}" >&2
  dpkg --print-foreign-architectures | grep -qx "$deb" || $sudo dpkg --add-architecture "$deb"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"

up=$(echo "$triple" | tr 'a-z-' 'A-Z_')
export "CARGO_TARGET_${up}_LINKER=$gnu-gcc"
export "CARGO_TARGET_${up}_RUNNER=$qemu -L /usr/$gnu"
export "CC_${triple//-/_}=$gnu-gcc"
export "AR_${triple//-/_}=$gnu-ar"
# alsa-sys finds the target's libasound through its multiarch pkg-config directory.
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_LIBDIR="/usr/lib/$gnu/pkgconfig:/usr/share/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR=/

profile=(--release); dir=release
if [ "${CROSS_PROFILE:-release}" = check ]; then
  # Its own profile, so its own directories and cargo lock: it can build while the
  # host's release build (cargo deb) runs.
  profile=(--profile cross-check --config 'profile.cross-check.inherits="release"'
    --config 'profile.cross-check.lto="thin"' --config 'profile.cross-check.codegen-units=16')
  dir=cross-check
fi
start=$(date +%s)
cargo build --locked "${profile[@]}" --target "$triple" -p edgerec --bin edgerec 2>&1 | tail -n 2
bin="${CARGO_TARGET_DIR:-target}/$triple/$dir/edgerec"
echo "cross: $bin $(stat -c %s "$bin") bytes ($(file -b "$bin" | cut -d, -f1-2)), built in $(( $(date +%s) - start )) s"
[ "${CROSS_SKIP_TESTS:-0}" = 1 ] && exit 0

# Can qemu-user run a threaded program here? (Seen on a Firecracker VM with kernel 6.18:
# qemu-user 7.2 and 10.0 hang at the first pthread_create, whatever the program.) A
# 5-line C probe tells, in seconds; CROSS_REQUIRE_EMULATION=1 makes a hang a failure.
probe=$(mktemp -d)
printf '%s\n' '#include <pthread.h>' 'static void *f(void *a) { return a; }' \
  'int main(void) { pthread_t t; return pthread_create(&t, 0, f, 0) || pthread_join(t, 0); }' \
  > "$probe/p.c"
"$gnu-gcc" -o "$probe/p" "$probe/p.c" -lpthread
if ! timeout -s KILL 20 "$qemu" -L "/usr/$gnu" "$probe/p"; then
  rm -rf "$probe"
  echo "cross: SKIPPED the emulated tests: $qemu cannot start a thread on this host (a pthread probe hangs)" >&2
  [ "${CROSS_REQUIRE_EMULATION:-0}" = 1 ] && exit 1
  exit 0
fi
rm -rf "$probe"

start=$(date +%s)
timeout 1800 cargo test --locked --target "$triple" -p edgerec --lib 2>&1 | tail -n 4
echo "cross: unit tests under $qemu in $(( $(date +%s) - start )) s"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
$qemu -L "/usr/$gnu" "$bin" record --backend synth --duration 2s --out "$out" >"$out/record.log"
wav=$(sed -nE 's/^recording: ([^ ]+) .*/\1/p' "$out/record.log")
[ -f "$wav" ] || { cat "$out/record.log"; echo "cross: no recording" >&2; exit 1; }
secs=$(sox --i -D "$wav")
awk -v s="$secs" 'BEGIN { exit !(s >= 1.9 && s <= 2.1) }' || { echo "cross: $wav is $secs s, not 2 s" >&2; exit 1; }
echo "cross: record --backend synth under $qemu: $wav, $secs s (sox)"
