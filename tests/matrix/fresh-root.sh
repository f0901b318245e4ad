#!/bin/bash
# The README's two commands, in README order, on a fresh Debian machine of another suite:
#   bash tests/matrix/fresh-root.sh trixie
# builds a minimal root (mmdebstrap --variant=apt: no Kamailio, no make, no venv), copies the
# committed repository into it, then
#   1. `bash bootstrap.sh run`: passes when the log shows the example's UP and DOWN and kamcmd
#      lists both (it installs only the system packages); Kamailio is then stopped by PID;
#   2. `bash bootstrap.sh test MATRIX= FRESH= CONTAINER_SUITES= INSTALL_SUITES=`: venv, ruff, mypy, unit tests and
#      the whole integration suite against that suite's Kamailio and Python, network
#      namespaces included.  Left out there, and run on the host instead: the container tier
#      and the version matrix (podman and chroots nested in this chroot).
# The machine's local CAs (/usr/local/share/ca-certificates, e.g. a TLS-inspecting egress
# proxy's) and CA bundle are copied in, as a fresh machine on the same network has them.  The mounts and the root are removed on exit; rm never crosses a mount point.
set -euo pipefail
cd "$(dirname "$0")/../.."
suite=${1:?usage: fresh-root.sh trixie}
root=$(mktemp -d /var/tmp/ka-kemi-fresh-XXXXXX)
log=$root.log
main=""
stop_main() {
    if [ -n "$main" ]; then
        kill "$main" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$main" 2>/dev/null || break; sleep 0.2; done
        main=""
    fi
}
cleanup() {
    stop_main
    for m in $(findmnt -rn -o TARGET | grep -F "$root/" | sort -r) $root; do
        umount -R "$m" 2>/dev/null || umount -lR "$m" 2>/dev/null || true
    done
    if findmnt -rn -o TARGET | grep -q -e "^$root\$" -e "^$root/"; then
        echo "fresh-root: mounts left under $root, not removing it"
    else
        rm -rf --one-file-system "$root"
    fi
    rm -f "$log"
}
trap cleanup EXIT
mirror=$(bash tests/matrix/apt-mirror.sh)  # the machine's own; none: a clear error
mmdebstrap --quiet --variant=apt "$suite" "$root" "deb $mirror $suite main"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > "$root/etc/hosts"
mkdir -p "$root/usr/local/share/ca-certificates" "$root/etc/ssl/certs"
cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$root/opt/ka-kemi"
git archive HEAD | tar -x -C "$root/opt/ka-kemi"
# the root is a mount point of its own: `ip netns exec` (network namespace peers) remounts /
mount --bind "$root" "$root"
for d in proc sys dev; do mount --rbind "/$d" "$root/$d"; mount --make-rslave "$root/$d"; done
in_root() { chroot "$root" /bin/bash -c "cd /opt/ka-kemi && $1"; }

# 1. bash bootstrap.sh run
t0=$(date +%s)
in_root "exec bash bootstrap.sh run" > "$log" 2>&1 &
deadline=$(( $(date +%s) + 300 ))
until grep -q "owner _params: UNKNOWN -> UP" "$log" && grep -q "owner _params: UNKNOWN -> DOWN" "$log"; do
    if [ "$(date +%s)" -gt "$deadline" ]; then tail -n 40 "$log"; echo "fresh-root $suite: no UP/DOWN in 300 s"; exit 1; fi
    sleep 1
done
for p in $(pgrep -x kamailio); do
    if [ "$(readlink "/proc/$p/root")" = "$root" ] && [ "$(ps -o comm= -p "$(ps -o ppid= -p "$p" | tr -d ' ')")" != kamailio ]; then
        main=$p
    fi
done
listing=$(chroot "$root" kamcmd keepalive.list)
echo "fresh-root $suite: $(chroot "$root" kamailio -v | head -1 | sed 's/^version: //'); log:"
grep -E "UNKNOWN -> (UP|DOWN)" "$log"
[ "$(grep -c 'state: 1' <<<"$listing")" = 1 ] && [ "$(grep -c 'state: 2' <<<"$listing")" = 1 ] || {
    echo "$listing"; echo "fresh-root $suite: kamcmd keepalive.list is not one UP and one DOWN"; exit 1; }
echo "fresh-root $suite: bash bootstrap.sh run works (kamcmd lists one UP, one DOWN) in $(( $(date +%s) - t0 )) s"
stop_main

# 2. bash bootstrap.sh test (this suite's tiers)
t0=$(date +%s)
in_root "exec bash bootstrap.sh test MATRIX= FRESH= CONTAINER_SUITES= INSTALL_SUITES="
echo "fresh-root $suite: bash bootstrap.sh test passed in $(( $(date +%s) - t0 )) s"
