#!/bin/bash
# The README's main command on a fresh Debian machine of another suite:
#   bash tests/matrix/fresh-run.sh trixie
# builds a minimal root (mmdebstrap --variant=apt: no Kamailio, no make, no venv), copies the
# committed repository into it, runs `bash bootstrap.sh run` there (it installs what it needs
# with apt) and passes when the log shows the example's UP and DOWN and kamcmd lists both.
# Kamailio is stopped by PID; the mounts and the root are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
suite=${1:?usage: fresh-run.sh trixie}
root=$(mktemp -d /var/tmp/ka-kemi-fresh-XXXXXX)
log=$root.log
main=""
cleanup() {
    [ -n "$main" ] && kill "$main" 2>/dev/null && sleep 2
    for d in dev sys proc; do umount -R "$root/$d" 2>/dev/null || umount -lR "$root/$d" 2>/dev/null || true; done
    rm -rf "$root" "$log"
}
trap cleanup EXIT
mirror=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
         /etc/apt/sources.list.d/*.list 2>/dev/null | grep -oE 'https?://[^ ]+/debian/?( |$)' |
         grep -v security | head -1 | tr -d ' ' || true)
mmdebstrap --quiet --variant=apt "$suite" "$root" "deb ${mirror:-http://deb.debian.org/debian} $suite main"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > "$root/etc/hosts"
mkdir -p "$root/opt/ka-kemi"
git archive HEAD | tar -x -C "$root/opt/ka-kemi"
for d in proc sys dev; do mount --rbind "/$d" "$root/$d"; mount --make-rslave "$root/$d"; done
chroot "$root" /bin/bash -c "cd /opt/ka-kemi && exec bash bootstrap.sh run" > "$log" 2>&1 &
deadline=$(( $(date +%s) + 300 ))
until grep -q "owner _params: UNKNOWN -> UP" "$log" && grep -q "owner _params: UNKNOWN -> DOWN" "$log"; do
    if [ "$(date +%s)" -gt "$deadline" ]; then tail -n 40 "$log"; echo "fresh-run $suite: no UP/DOWN in 300 s"; exit 1; fi
    sleep 1
done
for p in $(pgrep -x kamailio); do
    if [ "$(readlink "/proc/$p/root")" = "$root" ] && [ "$(ps -o comm= -p "$(ps -o ppid= -p "$p" | tr -d ' ')")" != kamailio ]; then
        main=$p
    fi
done
listing=$(chroot "$root" kamcmd keepalive.list)
echo "fresh-run $suite: $(chroot "$root" kamailio -v | head -1 | sed 's/^version: //'); log:"
grep -E "UNKNOWN -> (UP|DOWN)" "$log"
[ "$(grep -c 'state: 1' <<<"$listing")" = 1 ] && [ "$(grep -c 'state: 2' <<<"$listing")" = 1 ] || {
    echo "$listing"; echo "fresh-run $suite: kamcmd keepalive.list is not one UP and one DOWN"; exit 1; }
echo "fresh-run $suite: bash bootstrap.sh run works (kamcmd lists one UP, one DOWN)"
