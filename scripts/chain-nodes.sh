#!/usr/bin/env bash
# Local blockchain nodes for tests, without Docker:
#   - anvil (EVM dev node) from the npm package @foundry-rs/anvil, kept in a
#     cache folder outside the repo so a clean clone reuses it;
#   - litecoind (Debian package `litecoind`) in regtest.
#
#   scripts/chain-nodes.sh install
#       Idempotent and quiet. Installs what is missing (no network when all is
#       there), writes $CACHE/env and prints it:
#       ANVIL_BIN=... LITECOIND_BIN=... LITECOIN_CLI_BIN=...
#   scripts/chain-nodes.sh env
#       Prints $CACHE/env (installs first when it is missing).
#   scripts/chain-nodes.sh start-anvil <port> <chain-id>
#       Starts anvil on 127.0.0.1:<port>, waits until eth_chainId answers,
#       prints its pid. Already answering with that chain id: does nothing.
#   scripts/chain-nodes.sh start-litecoind <datadir> <rpcport> <p2pport>
#       Starts litecoind -regtest on 127.0.0.1, waits for RPC, creates or loads
#       the wallet $LTC_WALLET and, on an empty chain, mines $LTC_INITIAL_BLOCKS
#       (101) blocks to it so 50 LTC are spendable. Prints its pid.
#   scripts/chain-nodes.sh stop-anvil <port>
#   scripts/chain-nodes.sh stop-litecoind <datadir> <rpcport>
#   scripts/chain-nodes.sh stop-all
#       Stops every node this script started (pid files in $CACHE/run).
#
# Environment: HASHGRID_NODES_CACHE (default ~/.cache/hashgrid-nodes),
# ANVIL_VERSION (1.7.1), LTC_RPC_USER / LTC_RPC_PASSWORD (hashgrid/hashgrid),
# LTC_WALLET (hashgrid), LTC_INITIAL_BLOCKS (101), ANVIL_BLOCK_TIME (unset: a
# block per transaction; N: also a block every N seconds).
# See scripts/chain-nodes.md for versions, timings and quirks.
set -euo pipefail

CACHE="${HASHGRID_NODES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hashgrid-nodes}"
NPM_PREFIX="$CACHE/npm"
RUN_DIR="$CACHE/run"
ENV_FILE="$CACHE/env"
ANVIL_VERSION="${ANVIL_VERSION:-1.7.1}"
LTC_RPC_USER="${LTC_RPC_USER:-hashgrid}"
LTC_RPC_PASSWORD="${LTC_RPC_PASSWORD:-hashgrid}"
LTC_WALLET="${LTC_WALLET:-hashgrid}"
LTC_INITIAL_BLOCKS="${LTC_INITIAL_BLOCKS:-101}"

say() { printf '%s\n' "$*" >&2; }
die() { say "chain-nodes: $*"; exit 1; }

# A process that exists and is not a zombie (PID 1 here may not reap
# orphans, so a stopped daemon can linger as <defunct>).
alive() {
    [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] || return 1
    local state
    state=$(sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

wait_gone() { # pid seconds
    local i
    for i in $(seq 1 $(( $2 * 10 ))); do
        alive "$1" || return 0
        sleep 0.1
    done
    return 1
}

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

apt_install() {
    can_install || die "missing $*; install it as root: apt-get install $*"
    # Only refresh the lists when the package has no candidate (fresh machine).
    local p
    for p in "$@"; do
        if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
            break
        fi
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

anvil_platform_pkg() {
    local arch
    case "$(uname -m)" in
        x86_64|amd64) arch=amd64 ;;
        aarch64|arm64) arch=arm64 ;;
        *) die "no @foundry-rs/anvil build for $(uname -m)" ;;
    esac
    case "$(uname -s)" in
        Linux) echo "@foundry-rs/anvil-linux-$arch" ;;
        Darwin) echo "@foundry-rs/anvil-darwin-$arch" ;;
        *) die "no @foundry-rs/anvil build for $(uname -s)" ;;
    esac
}

# The native binary shipped inside the platform package (an optional
# dependency of @foundry-rs/anvil); node_modules/.bin/anvil is a node wrapper
# that spawns it.
anvil_native() { echo "$NPM_PREFIX/node_modules/$(anvil_platform_pkg)/bin/anvil"; }

anvil_ok() {
    local bin
    bin=$(anvil_native)
    [ -x "$bin" ] && "$bin" --version 2>/dev/null | head -n1 | grep -q "Version: $ANVIL_VERSION"
}

ensure_anvil() {
    anvil_ok && return 0
    if ! command -v npm >/dev/null; then
        say "chain-nodes: installing npm…"
        apt_install nodejs npm
    fi
    mkdir -p "$NPM_PREFIX"
    # --ignore-scripts: the postinstall only downloads the binary when the
    # optional platform package is absent; --include=optional makes sure it is not.
    npm install --prefix "$NPM_PREFIX" --no-save --no-audit --no-fund --no-update-notifier \
        --include=optional --ignore-scripts --loglevel=error \
        "@foundry-rs/anvil@$ANVIL_VERSION" >/dev/null \
        || die "npm install @foundry-rs/anvil@$ANVIL_VERSION failed"
    anvil_ok || die "anvil $ANVIL_VERSION not runnable at $(anvil_native)"
}

ensure_litecoind() {
    if ! command -v litecoind >/dev/null || ! command -v litecoin-cli >/dev/null; then
        say "chain-nodes: installing litecoind…"
        apt_install litecoind
    fi
    command -v litecoind >/dev/null || die "litecoind not found after install"
}

write_env() {
    mkdir -p "$CACHE"
    local tmp="$ENV_FILE.$$"
    {
        echo "ANVIL_BIN=$(anvil_native)"
        echo "ANVIL_NPM_BIN=$NPM_PREFIX/node_modules/.bin/anvil"
        echo "LITECOIND_BIN=$(command -v litecoind)"
        echo "LITECOIN_CLI_BIN=$(command -v litecoin-cli)"
        echo "LTC_RPC_USER=$LTC_RPC_USER"
        echo "LTC_RPC_PASSWORD=$LTC_RPC_PASSWORD"
        echo "LTC_WALLET=$LTC_WALLET"
    } >"$tmp"
    mv -f "$tmp" "$ENV_FILE"
}

cmd_install() {
    command -v curl >/dev/null || apt_install curl ca-certificates
    ensure_anvil
    ensure_litecoind
    write_env
    cat "$ENV_FILE"
}

cmd_env() {
    if [ -f "$ENV_FILE" ] && [ -x "$(sed -n 's/^ANVIL_BIN=//p' "$ENV_FILE")" ] \
        && [ -x "$(sed -n 's/^LITECOIND_BIN=//p' "$ENV_FILE")" ]; then
        cat "$ENV_FILE"
    else
        cmd_install
    fi
}

eth_chain_id() { # port -> decimal chain id, or nothing
    local out
    out=$(curl -s -m 2 -X POST -H 'content-type: application/json' \
        --data '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' \
        "http://127.0.0.1:$1" 2>/dev/null) || return 1
    out=$(printf '%s' "$out" | sed -n 's/.*"result":"0x\([0-9a-fA-F]*\)".*/\1/p')
    [ -n "$out" ] && echo $(( 16#$out ))
}

cmd_start_anvil() {
    [ $# -ge 2 ] || die "usage: start-anvil <port> <chain-id>"
    local port=$1 chain=$2 pidf="$RUN_DIR/anvil-$1.pid" log="$RUN_DIR/anvil-$1.log" got pid
    got=$(eth_chain_id "$port" || true)
    if [ -n "$got" ]; then
        [ "$got" = "$chain" ] || die "port $port already answers with chain id $got"
        cat "$pidf" 2>/dev/null || echo 0
        return 0
    fi
    anvil_ok || ensure_anvil
    mkdir -p "$RUN_DIR"
    local extra=()
    [ -n "${ANVIL_BLOCK_TIME:-}" ] && extra=(--block-time "$ANVIL_BLOCK_TIME")
    nohup setsid "$(anvil_native)" --host 127.0.0.1 --port "$port" --chain-id "$chain" \
        --silent "${extra[@]}" </dev/null >"$log" 2>&1 &
    pid=$!
    echo "$pid" >"$pidf"
    for _ in $(seq 1 200); do
        got=$(eth_chain_id "$port" || true)
        [ -n "$got" ] && { echo "$pid"; return 0; }
        alive "$pid" || break
        sleep 0.05
    done
    kill "$pid" 2>/dev/null || true
    rm -f "$pidf"
    die "anvil did not answer on port $port: $(tail -n 5 "$log" 2>/dev/null)"
}

cmd_stop_anvil() {
    [ $# -ge 1 ] || die "usage: stop-anvil <port>"
    local pidf="$RUN_DIR/anvil-$1.pid" pid
    pid=$(cat "$pidf" 2>/dev/null || true)
    if alive "$pid"; then
        kill "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidf"
}

ltc_cli() { # datadir rpcport args...
    local d=$1 p=$2; shift 2
    litecoin-cli -regtest -datadir="$d" -rpcconnect=127.0.0.1 -rpcport="$p" \
        -rpcuser="$LTC_RPC_USER" -rpcpassword="$LTC_RPC_PASSWORD" "$@"
}

cmd_start_litecoind() {
    [ $# -ge 3 ] || die "usage: start-litecoind <datadir> <rpcport> <p2pport>"
    local d=$1 rpc=$2 p2p=$3 pid n addr
    command -v litecoind >/dev/null || ensure_litecoind
    mkdir -p "$d" "$RUN_DIR"
    d=$(cd "$d" && pwd)
    local pidf="$d/litecoind.pid"
    if ! ltc_cli "$d" "$rpc" getblockcount >/dev/null 2>&1; then
        # -listen stays on (it cannot be combined with -bind=); p2p is on
        # 127.0.0.1 only, with no seeds, so the node never reaches out.
        litecoind -regtest -daemon -datadir="$d" -pid="$pidf" \
            -rpcuser="$LTC_RPC_USER" -rpcpassword="$LTC_RPC_PASSWORD" \
            -rpcport="$rpc" -rpcbind=127.0.0.1 -rpcallowip=127.0.0.1 \
            -port="$p2p" -bind=127.0.0.1 -dnsseed=0 -discover=0 -upnp=0 \
            -fallbackfee=0.0001 -txindex=1 -server=1 -printtoconsole=0 >/dev/null \
            || die "litecoind failed to start: $(tail -n 5 "$d/regtest/debug.log" 2>/dev/null)"
        for _ in $(seq 1 300); do
            ltc_cli "$d" "$rpc" getblockcount >/dev/null 2>&1 && break
            sleep 0.1
        done
        ltc_cli "$d" "$rpc" getblockcount >/dev/null 2>&1 \
            || die "litecoind RPC did not answer on port $rpc: $(tail -n 5 "$d/regtest/debug.log" 2>/dev/null)"
    fi
    pid=$(cat "$pidf" 2>/dev/null || true)
    echo "$d $rpc" >"$RUN_DIR/litecoind-$rpc.run"
    # Since 0.21 no default wallet is created: create it once, load it later.
    if ! ltc_cli "$d" "$rpc" listwallets | grep -q "\"$LTC_WALLET\""; then
        if [ -d "$d/regtest/wallets/$LTC_WALLET" ]; then
            ltc_cli "$d" "$rpc" loadwallet "$LTC_WALLET" >/dev/null
        else
            ltc_cli "$d" "$rpc" createwallet "$LTC_WALLET" >/dev/null
        fi
    fi
    n=$(ltc_cli "$d" "$rpc" getblockcount)
    if [ "$n" -lt "$LTC_INITIAL_BLOCKS" ]; then
        addr=$(ltc_cli "$d" "$rpc" -rpcwallet="$LTC_WALLET" getnewaddress)
        ltc_cli "$d" "$rpc" generatetoaddress $(( LTC_INITIAL_BLOCKS - n )) "$addr" >/dev/null
    fi
    echo "${pid:-0}"
}

cmd_stop_litecoind() {
    [ $# -ge 2 ] || die "usage: stop-litecoind <datadir> <rpcport>"
    local d=$1 rpc=$2 pid
    [ -d "$d" ] || { rm -f "$RUN_DIR/litecoind-$rpc.run"; return 0; }
    d=$(cd "$d" && pwd)
    pid=$(cat "$d/litecoind.pid" 2>/dev/null || true)
    ltc_cli "$d" "$rpc" stop >/dev/null 2>&1 || true
    if [ -n "$pid" ] && ! wait_gone "$pid" 30; then
        kill "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN_DIR/litecoind-$rpc.run"
}

cmd_stop_all() {
    local f
    for f in "$RUN_DIR"/anvil-*.pid; do
        [ -e "$f" ] || continue
        f=${f##*/anvil-}
        cmd_stop_anvil "${f%.pid}"
    done
    for f in "$RUN_DIR"/litecoind-*.run; do
        [ -e "$f" ] || continue
        # shellcheck disable=SC2046
        cmd_stop_litecoind $(cat "$f")
    done
}

case "${1:-}" in
    install) cmd_install ;;
    env) cmd_env ;;
    start-anvil) shift; cmd_start_anvil "$@" ;;
    stop-anvil) shift; cmd_stop_anvil "$@" ;;
    start-litecoind) shift; cmd_start_litecoind "$@" ;;
    stop-litecoind) shift; cmd_stop_litecoind "$@" ;;
    stop-all) cmd_stop_all ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
