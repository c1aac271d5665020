# Shared by run.sh and diagnostics.sh (sourced, not run): stopping our own
# processes, the network namespace the browser tests run in, and what a
# fresh machine lacks for them.

# stop ends processes this script started, by PID: TERM, up to 5 s, then KILL.
stop() {
	local p
	for p in "$@"; do
		[[ -n "$p" ]] || continue
		if kill -0 "$p" 2>/dev/null; then
			kill "$p" 2>/dev/null || true
			for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
			kill -9 "$p" 2>/dev/null || true
		fi
		wait "$p" 2>/dev/null || true
	done
}

# make_netns NS LABEL ERRFILE creates namespace NS with only lo up, so that
# Chromium and pinhole inside it use nothing but 127.0.0.1. Without
# namespaces the test cannot keep Chromium on loopback: it exits 0 with a
# loud SKIP line.
make_netns() {
	local ns=$1 label=$2 err=$3
	if ! ip netns add "$ns" 2>"$err"; then
		echo "SKIP: $label: this machine refuses network namespaces ($(tr -d '\n' <"$err")); it needs root or CAP_NET_ADMIN"
		exit 0
	fi
	ip -n "$ns" link set lo up
}

# ensure_browser LOG installs what a fresh machine lacks: Debian's chromium
# (a browser download does not work here), a CJK font (Chinese labels render
# as boxes without one) and playwright-core at the version package-lock.json
# pins.
ensure_browser() {
	local log=$1 here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	if [[ ! -x /usr/bin/chromium ]]; then
		if [[ $(id -u) -ne 0 ]]; then
			echo "FAIL: /usr/bin/chromium missing; install it: apt-get install -y chromium"
			exit 1
		fi
		echo "installing Debian chromium (apt-get install -y chromium)"
		DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >>"$log" 2>&1 ||
			{ apt-get update >>"$log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >>"$log" 2>&1; } ||
			{ tail -n 20 "$log"; echo "FAIL: cannot install chromium"; exit 1; }
	fi
	if ! fc-list :lang=zh 2>/dev/null | grep -q . && [[ $(id -u) -eq 0 ]]; then
		echo "installing a CJK font (apt-get install -y fonts-wqy-microhei)"
		DEBIAN_FRONTEND=noninteractive apt-get install -y fonts-wqy-microhei >>"$log" 2>&1 ||
			echo "warning: no CJK font; Chinese screenshots will show boxes"
	fi
	local want have
	want=$(node -p "require('$here/package-lock.json').packages['node_modules/playwright-core'].version")
	have=$(node -p "require('$here/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
	if [[ "$want" != "$have" ]]; then
		(cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
	fi
}
