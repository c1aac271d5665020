#!/usr/bin/env bash
# Browser test of the diagnostics page (issue 4): builds pinhole and turnd (a
# pion/turn STUN/TURN server), starts both and Debian's Chromium (driven by
# playwright-core) inside a network namespace of their own with only lo up,
# so every packet stays on 127.0.0.1, and runs diagnostics.test.mjs.
# run.sh (the web app's test) can call this script, or start turnd itself and
# run diagnostics.test.mjs against its own pinhole with the same environment.
# Exits 0 with a SKIP line only when the machine refuses network namespaces.
#
# Env: PINHOLE_TEST_KEEP=1 keeps the temp dir (binaries, logs).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
http_port=18081
udp_ports=10121-10125
broken_http_port=18082
broken_udp_ports=10126-10127
turn_addr=127.0.0.1:3478
turn_user=pinhole
turn_pass=secret
# With an admin token, as a deployment reachable from the internet runs: the
# page's self-test and room clean-up must carry it.
admin_token=diagnostics-test-admin-token
ns="pinhole-diag-$$"
tmp=$(mktemp -d)
pids=()
ns_made=""
# shellcheck source=lib.sh
source "$here/lib.sh"

cleanup() {
	status=$?
	stop "${pids[@]}"
	if [[ -n "$ns_made" ]]; then ip netns del "$ns" 2>/dev/null || true; fi
	if [[ $status -ne 0 && -f "$tmp/pinhole.log" ]]; then
		echo "--- last lines of pinhole.log ---"
		tail -n 40 "$tmp/pinhole.log" || true
	fi
	if [[ -n "${PINHOLE_TEST_KEEP:-}" ]]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_netns "$ns" "diagnostics browser test" "$tmp/netns.err"
ns_made=1
ensure_browser "$tmp/apt.log"

echo "building pinhole and turnd"
(cd "$root" && go build -o "$tmp/pinhole" . && go build -o "$tmp/turnd" ./web/test/turnd)

ip netns exec "$ns" "$tmp/turnd" -addr "$turn_addr" -user "$turn_user" -pass "$turn_pass" >"$tmp/turnd.log" 2>&1 &
pids+=($!)
ip netns exec "$ns" "$tmp/pinhole" --http-addr "127.0.0.1:$http_port" --udp-ports "$udp_ports" --public-ip 127.0.0.1 \
	--admin-token "$admin_token" --ice-servers "stun:$turn_addr,turn:$turn_user:$turn_pass@$turn_addr?transport=udp" >"$tmp/pinhole.log" 2>&1 &
pids+=($!)

# A second pinhole advertising an address nobody reaches (a documentation
# address; with only lo up the browser's checks to it fail at once): the
# path picture of its sessions shows the broken mapping (diagpath.test.mjs).
ip netns exec "$ns" "$tmp/pinhole" --http-addr "127.0.0.1:$broken_http_port" --udp-ports "$broken_udp_ports" --public-ip 198.51.100.1 \
	--setup-timeout 8s --state-dir "$tmp/state-broken" >"$tmp/pinhole-broken.log" 2>&1 &
pids+=($!)

for port in "$http_port" "$broken_http_port"; do
	ready=""
	for _ in $(seq 100); do
		if ip netns exec "$ns" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then ready=1; break; fi
		sleep 0.1
	done
	[[ -n "$ready" ]] || { echo "FAIL: pinhole on $port did not start"; exit 1; }
done

mkdir -p "$here/artifacts"
set +e
ip netns exec "$ns" env PINHOLE_URL="http://127.0.0.1:$http_port" PINHOLE_TURN="$turn_addr" \
	PINHOLE_TURN_USER="$turn_user" PINHOLE_TURN_PASS="$turn_pass" PINHOLE_ADMIN_TOKEN="$admin_token" \
	PINHOLE_ARTIFACTS="$here/artifacts" \
	HOME="$tmp" node "$here/diagnostics.test.mjs"
rc=$?
echo "=== diagpath.test.mjs"
ip netns exec "$ns" env PINHOLE_BROKEN_URL="http://127.0.0.1:$broken_http_port" PINHOLE_TURN="$turn_addr" PINHOLE_ARTIFACTS="$here/artifacts" \
	HOME="$tmp" node "$here/diagpath.test.mjs" || rc=1
set -e
cp "$tmp/pinhole.log" "$here/artifacts/pinhole-diagnostics.log" 2>/dev/null || true
cp "$tmp/pinhole-broken.log" "$here/artifacts/pinhole-broken.log" 2>/dev/null || true
exit $rc
