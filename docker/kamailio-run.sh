#!/bin/bash
# Container entrypoint: Kamailio in the foreground with the repository's kamailio.cfg.
# Environment -> kamailio.cfg defines (the same as `kamailio -A NAME=value`):
#   LISTEN_IP           address to listen on, UDP and TCP port 5060 (default: the container's first IPv4)
#   KA_DESTINATION      space-separated destinations, e.g. "sip:10.89.31.20:5060 sip:10.89.31.21:5060"
#   KA_PING_INTERVAL, KA_PING_TIMEOUT_MS, KA_DELETE_COUNTER, KA_PING_FROM
#   KA_REGISTER_KEEPALIVE_IDLE, _COUNT, _INTERVAL   TCP keepalive of REGISTER connections (kemi/example.py)
# Extra arguments are passed to kamailio unchanged.
set -euo pipefail
ip=${LISTEN_IP:-}
if [ -z "$ip" ]; then
    ip=$(ip -4 -o addr show scope global | awk '{sub(/\/.*/, "", $4); print $4; exit}')
fi
[ -n "$ip" ] || { echo "kamailio-run.sh: no IPv4 address found; set LISTEN_IP" >&2; exit 1; }
args=(-A "LISTEN_UDP=udp:$ip:5060" -A "LISTEN_TCP=tcp:$ip:5060")
for name in KA_PING_INTERVAL KA_PING_TIMEOUT_MS KA_DELETE_COUNTER \
        KA_REGISTER_KEEPALIVE_IDLE KA_REGISTER_KEEPALIVE_COUNT KA_REGISTER_KEEPALIVE_INTERVAL; do
    [ -n "${!name:-}" ] && args+=(-A "$name=${!name}")
done
for name in KA_DESTINATION KA_PING_FROM; do
    [ -n "${!name:-}" ] && args+=(-A "$name=\"${!name}\"")
done
mkdir -p /run/kamailio
echo "kamailio-run.sh: kamailio ${args[*]} $*"
exec kamailio -f /opt/ka-kemi/kamailio.cfg -DD -E -w /opt/ka-kemi -m "${SHM_MB:-64}" -M "${PKG_MB:-16}" \
    "${args[@]}" "$@"
