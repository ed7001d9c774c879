#!/usr/bin/env bash
# Signs and sends one Hashgrid partner API request with curl and openssl: the
# reference client for domain/src/identity/partner_sig.rs (a unit test there
# runs this script and checks it signs exactly what the server verifies).
#
# Usage:
#   HASHGRID_KEY_ID=hgk_... HASHGRID_KEY_SECRET=... \
#     scripts/partner-sign.sh [--dry-run | --print-canonical] METHOD URL [BODY]
#
#   scripts/partner-sign.sh GET  'https://api.example/partner/v1/balances'
#   scripts/partner-sign.sh POST 'https://api.example/partner/v1/orders?x=1' '{"q":1}'
#
# --dry-run          print the four headers, a blank line and the canonical
#                    string instead of sending
# --print-canonical  print only the canonical string
#
# HASHGRID_TIMESTAMP and HASHGRID_NONCE override the generated values (for
# tests and for reproducing a signature; never reuse a nonce for real).
#
# The canonical string is, joined by newlines:
#   timestamp, nonce, METHOD, path (as sent, still percent-encoded),
#   query parameters sorted by key then value (as sent; empty if none),
#   hex sha256 of the body.
#
# The secret is passed to openssl on its command line, where other local
# users can see it in `ps`: fine for an example on your own machine, not for
# a shared host.
set -euo pipefail

die() { printf 'partner-sign: %s\n' "$*" >&2; exit 2; }

mode=send
case "${1:-}" in
    --dry-run) mode=dry-run; shift ;;
    --print-canonical) mode=canonical; shift ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: $0 [--dry-run|--print-canonical] METHOD URL [BODY]"
command -v openssl >/dev/null || die "openssl is required"

method=$(printf '%s' "$1" | tr '[:lower:]' '[:upper:]')
url=$2
has_body=false
body=
if [ $# -eq 3 ]; then
    has_body=true
    body=$3
fi

key_id=${HASHGRID_KEY_ID:?set HASHGRID_KEY_ID to your key id (hgk_...)}
secret=${HASHGRID_KEY_SECRET:?set HASHGRID_KEY_SECRET to your key secret}
timestamp=${HASHGRID_TIMESTAMP:-$(date +%s)}
nonce=${HASHGRID_NONCE:-$(openssl rand -hex 16)}

# Split the URL the way the server sees it: no scheme/authority, no fragment.
case "$url" in
    *://*) rest=${url#*://} ;;
    *) die "URL must be absolute (https://host/path)" ;;
esac
case "$rest" in
    */*) path_query="/${rest#*/}" ;;
    *) path_query=/ ;;
esac
path_query=${path_query%%#*}
path=${path_query%%\?*}
query=
case "$path_query" in
    *\?*) query=${path_query#*\?} ;;
esac

# Sort by key (field 1 before the first '='), then by value (everything
# after it), bytewise. A plain `sort` of whole "k=v" lines would differ
# when one key is a prefix of another (a1=… sorts before a=… bytewise).
# The trailing newline from printf '%s\n' keeps an empty last parameter
# (from a trailing '&') as its own line, as the server keeps it.
sorted_query=
if [ -n "$query" ]; then
    sorted_query=$(printf '%s\n' "$query" | tr '&' '\n' | LC_ALL=C sort -t '=' -k1,1 -k2 | paste -sd '&' -)
fi

body_hash=$(printf '%s' "$body" | openssl dgst -sha256 -r | cut -d ' ' -f 1)

canonical=$(printf '%s\n%s\n%s\n%s\n%s\n%s' \
    "$timestamp" "$nonce" "$method" "$path" "$sorted_query" "$body_hash")

signature=$(printf '%s' "$canonical" | openssl dgst -sha256 -hmac "$secret" -r | cut -d ' ' -f 1)

case "$mode" in
    canonical)
        printf '%s\n' "$canonical"
        exit 0
        ;;
    dry-run)
        printf 'X-Hashgrid-Key: %s\nX-Hashgrid-Timestamp: %s\nX-Hashgrid-Nonce: %s\nX-Hashgrid-Signature: %s\n\n%s\n' \
            "$key_id" "$timestamp" "$nonce" "$signature" "$canonical"
        exit 0
        ;;
esac

args=(
    --silent --show-error
    # curl would otherwise resolve /./ and /../, changing the signed path.
    --path-as-is
    --request "$method"
    --header "X-Hashgrid-Key: $key_id"
    --header "X-Hashgrid-Timestamp: $timestamp"
    --header "X-Hashgrid-Nonce: $nonce"
    --header "X-Hashgrid-Signature: $signature"
    --header "Content-Type: application/json"
)
if $has_body; then
    # --data-raw sends the string unchanged; --data-binary would read a
    # file for a body starting with '@'.
    args+=(--data-raw "$body")
fi
exec curl "${args[@]}" "$url"
