# Shared by the bench scripts (sourced, not run).

# start_controller DIR NAME [serve options...]: serves the reference controller ($CTL) on a
# free loopback port with its database and store in DIR, waits until it serves, and adds
# the node NAME. Sets PORT and NODE, writes the node's token to DIR/token (mode 0600) and
# appends the server's pid to the caller's `pids` array (for its cleanup trap).
start_controller() {
  local dir=$1 name=$2 out
  shift 2
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  EDGEREC_LOG=warn "$CTL" serve "$@" --listen "127.0.0.1:$PORT" --db "$dir/ctl.db" \
    --store "$dir/store" >"$dir/serve.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do grep -q serving "$dir/serve.out" 2>/dev/null && break; sleep 0.1; done
  out=$("$CTL" node add --db "$dir/ctl.db" "$name")
  NODE=$(awk '/^node:/{print $2}' <<<"$out")
  install -m 600 /dev/null "$dir/token"
  awk '/^token:/{printf "%s", $2}' <<<"$out" >"$dir/token"
}
