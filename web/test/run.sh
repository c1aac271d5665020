#!/usr/bin/env bash
# Browser tests of pinhole's web app: web.test.mjs (rooms, room, ports,
# languages; issue 3), then ./diagnostics.sh (the diagnostics page, issue 4,
# its own pinhole with a pion/turn server) when present.
#
# Builds pinhole, starts it and Debian's Chromium (driven by playwright-core)
# inside a network namespace of their own with only lo up, so that every
# packet - HTTP, ICE, DTLS, SRTP - stays on 127.0.0.1 (Chromium
# otherwise gathers candidates on the machine's real interfaces too). Exits 0
# with a SKIP line only when the machine refuses network namespaces.
#
# Env: PINHOLE_TEST_KEEP=1 keeps the temp dir (binary, pinhole.log).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
http_port=18080
udp_ports=10111-10115
admin_token=web-test-admin-token
bad_http_port=18090
bad_udp_ports=10131-10132
https_port=18443
https_udp_ports=10141-10142
ns="pinhole-web-$$"
tmp=$(mktemp -d)
pid=""
bad_pid=""
https_pid=""
ns_made=""

# shellcheck source=lib.sh
source "$here/lib.sh"

cleanup() {
	status=$?
	stop "$pid" "$bad_pid" "$https_pid"
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

# Namespaces first: without them the test cannot keep Chromium on loopback.
make_netns "$ns" "web browser test" "$tmp/netns.err"
ns_made=1
ensure_browser "$tmp/apt.log"

echo "building pinhole"
(cd "$root" && go build -o "$tmp/pinhole" .)

# With an admin token, as a real deployment should run: the rooms page must
# ask for it to create and delete rooms.
ip netns exec "$ns" "$tmp/pinhole" --http-addr "127.0.0.1:$http_port" --udp-ports "$udp_ports" \
	--public-ip 127.0.0.1 --admin-token "$admin_token" >"$tmp/pinhole.log" 2>&1 &
pid=$!
# A second pinhole announcing an address nobody can reach (a documentation
# address; with only lo up the browser's checks to it fail at once) and a
# short setup timeout: the room page must say "connection failed".
ip netns exec "$ns" "$tmp/pinhole" --http-addr "127.0.0.1:$bad_http_port" --udp-ports "$bad_udp_ports" \
	--public-ip 198.51.100.1 --setup-timeout 5s --state-dir "$tmp/state-unreachable" >"$tmp/pinhole-unreachable.log" 2>&1 &
bad_pid=$!
# A third one over HTTPS with a certificate of its own making: the browser
# trusts it by the SPKI fingerprint pinhole logs (https.test.mjs).
ip netns exec "$ns" "$tmp/pinhole" --http-addr "127.0.0.1:$https_port" --udp-ports "$https_udp_ports" \
	--public-ip 127.0.0.1 --tls-self-signed --state-dir "$tmp/state-https" >"$tmp/pinhole-https.log" 2>&1 &
https_pid=$!

rm -rf "$here/artifacts"
mkdir -p "$here/artifacts"
rc=0
echo "=== web.test.mjs"
ip netns exec "$ns" env PINHOLE_URL="http://127.0.0.1:$http_port" PINHOLE_ARTIFACTS="$here/artifacts" \
	PINHOLE_UNREACHABLE_URL="http://127.0.0.1:$bad_http_port" PINHOLE_ADMIN_TOKEN="$admin_token" HOME="$tmp" node "$here/web.test.mjs" || rc=1
cp "$tmp/pinhole.log" "$here/artifacts/pinhole.log" 2>/dev/null || true
if ! kill -0 "$pid" 2>/dev/null; then
	echo "FAIL: pinhole exited during the test"
	rc=1
fi
echo "=== https.test.mjs"
spki=""
for _ in $(seq 100); do
	# slog quotes the value when it ends in base64 padding.
	spki=$(sed -n 's/.*spki_sha256="\{0,1\}\([^" ]*\).*/\1/p' "$tmp/pinhole-https.log" | head -n 1)
	[[ -n "$spki" ]] && break
	sleep 0.1
done
ip netns exec "$ns" env PINHOLE_HTTPS_URL="https://127.0.0.1:$https_port" PINHOLE_SPKI="$spki" HOME="$tmp" \
	node "$here/https.test.mjs" || rc=1
if [[ -x "$here/diagnostics.sh" ]]; then
	echo "=== diagnostics.sh"
	"$here/diagnostics.sh" || rc=1
fi
if [[ $rc -eq 0 ]]; then echo "PASS: web browser tests"; else echo "FAIL: web browser tests"; fi
exit $rc
