#!/bin/bash
# Container entrypoint: Kamailio in the foreground with the repository's kamailio.cfg.
# Environment -> kamailio.cfg defines (the same as `kamailio -A NAME=value`):
#   LISTEN_IP           address to listen on, UDP and TCP port 5060 (default: the container's first IPv4)
#   KA_DESTINATION      space-separated destinations, e.g. "sip:10.89.31.20:5060 sip:10.89.31.21:5060"
#   KA_PING_INTERVAL, KA_PING_TIMEOUT_MS, KA_DELETE_COUNTER, KA_PING_FROM
#   KA_REGISTER_KEEPALIVE_IDLE, _COUNT, _INTERVAL   TCP keepalive of REGISTER connections (kemi/example.py)
#   KA_RPC_HTTP_ALLOW, KA_RPC_HTTP_PATH, KA_RPC_HTTP_TOKEN, KA_RPC_ADD_RATE   JSON-RPC over HTTP
#                       (docs/security.md; the token is never printed)
# Extra arguments are passed to kamailio unchanged.
set -euo pipefail
ip=${LISTEN_IP:-}
if [ -z "$ip" ]; then
    ip=$(ip -4 -o addr show scope global | awk '{sub(/\/.*/, "", $4); print $4; exit}')
fi
[ -n "$ip" ] || { echo "kamailio-run.sh: no IPv4 address found; set LISTEN_IP" >&2; exit 1; }
args=(-A "LISTEN_UDP=udp:$ip:5060" -A "LISTEN_TCP=tcp:$ip:5060")
for name in KA_PING_INTERVAL KA_PING_TIMEOUT_MS KA_DELETE_COUNTER KA_RPC_ADD_RATE \
        KA_REGISTER_KEEPALIVE_IDLE KA_REGISTER_KEEPALIVE_COUNT KA_REGISTER_KEEPALIVE_INTERVAL; do
    [ -n "${!name:-}" ] && args+=(-A "$name=${!name}")
done
for name in KA_DESTINATION KA_PING_FROM KA_RPC_HTTP_ALLOW KA_RPC_HTTP_PATH KA_RPC_HTTP_TOKEN; do
    [ -n "${!name:-}" ] && args+=(-A "$name=\"${!name}\"")
done
mkdir -p /run/kamailio
shown="${args[*]} $*"
[ -n "${KA_RPC_HTTP_TOKEN:-}" ] && shown=${shown//"$KA_RPC_HTTP_TOKEN"/<token>}
echo "kamailio-run.sh: kamailio $shown"
exec kamailio -f /opt/ka-kemi/kamailio.cfg -DD -E -w /opt/ka-kemi -m "${SHM_MB:-64}" -M "${PKG_MB:-16}" \
    "${args[@]}" "$@"
