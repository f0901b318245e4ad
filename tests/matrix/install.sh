#!/bin/bash
# Install test (docs/install.md): the .deb and the wheel, built from a clean clone of HEAD,
# installed into fresh Debian roots and run from the installed files only.
#   bash tests/matrix/install.sh bookworm trixie
# Per suite: a minimal mmdebstrap root (+ netbase), `apt-get install ./ka-kemi_*.deb` (apt
# resolves the Depends), CFGFILE=/etc/kamailio/ka-kemi.cfg in /etc/default/kamailio, then
# Kamailio started as kamailio.service's ExecStart does (no systemd in a chroot: User/Group,
# Environment, EnvironmentFile and RuntimeDirectory read from the installed unit), in a
# network namespace of its own; kamcmd as a kamailio group member sees UP and DOWN, a user
# outside the group is refused, a keepalive.add survives a restart, purge leaves nothing.
# Then the wheel with pip --break-system-packages and a smaller start check.  Each step has
# a timeout and prints PASS/FAIL; Kamailio's syslog goes to a file shown on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
[ $# -gt 0 ] || { echo "usage: install.sh SUITE..."; exit 2; }
command -v mmdebstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null; }
work=$(mktemp -d /var/tmp/ka-kemi-install-XXXXXX)
root=""
t_all=$(date +%s)
kamailio_pids() {
    for p in $(pgrep -x kamailio || true); do
        [ "$(readlink "/proc/$p/root")" = "$root" ] && echo "$p"
    done
    return 0
}
close_root() {
    [ -n "$root" ] || return 0
    for p in $(kamailio_pids); do kill -KILL "$p" 2>/dev/null || true; done
    [ -s "$work/logger.pid" ] && kill "$(cat "$work/logger.pid")" 2>/dev/null || true
    for m in $(findmnt -rn -o TARGET | grep -F "$root/" | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done
    rm -rf --one-file-system "$root" "$work/logger.pid"
    root=""
}
cleanup() { close_root; rm -rf --one-file-system "$work"; }
trap cleanup EXIT
step() {  # step NAME TIMEOUT_S CMD... : PASS/FAIL line, stops the run on FAIL
    local name=$1 limit=$2 t0 rc=0
    shift 2
    t0=$(date +%s)
    timeout "$limit" bash -euo pipefail -c '"$@"' step "$@" >"$work/step.log" 2>&1 || rc=$?
    if [ "$rc" = 0 ]; then
        echo "PASS $name ($(( $(date +%s) - t0 )) s)"
    else
        tail -n 30 "$work/step.log"
        [ -n "$root" ] && [ -s "$work/syslog" ] && { echo "--- kamailio log:"; tail -n 20 "$work/syslog"; }
        echo "FAIL $name ($([ "$rc" = 124 ] && echo "timeout after $limit s" || echo "exit $rc"))"
        exit 1
    fi
}
in_root() { chroot "$root" /bin/sh -c "$1"; }

build() {
    git clone -q --no-local "$repo" "$work/src"
    git -C "$work/src" checkout -q "$(git -C "$repo" rev-parse HEAD)"
    make -C "$work/src" -s deb
    (cd "$work/src" && "$repo/.venv/bin/pip" wheel -q --no-deps -w dist .)
    deb=$(ls "$work"/src/dist/ka-kemi_*_all.deb) && whl=$(ls "$work"/src/dist/ka_kemi-*.whl)
    cp "$deb" "$whl" "$work/"
}
check_contents() {  # the wheel and the .deb hold the product and its examples, nothing else
    local bad
    bad=$(python3 -m zipfile -l "$work"/ka_kemi-*.whl | awk 'NR>1 {print $1}' |
          grep -vE '^(ka_core|kemi)/[^ ]*$|^ka_kemi-[^/]+\.dist-info/|^ka_kemi-[^/]+\.data/data/share/ka-kemi/' || true)
    [ -z "$bad" ] || { echo "unexpected in the wheel: $bad"; return 1; }
    python3 -m zipfile -l "$work"/ka_kemi-*.whl | grep -q 'kemi/example.py'
    bad=$(dpkg-deb -c "$work"/ka-kemi_*_all.deb | awk '{print $6}' | sed 's|^\./|/|' |
          grep -vE '^/$|^/etc/$|^/etc/kamailio/(ka-kemi.cfg)?$|^/usr/$|^/usr/lib/$|^/usr/lib/python3/$|^/usr/lib/python3/dist-packages/((ka_core|kemi)(/.*)?)?$|^/usr/share/$|^/usr/share/doc/$|^/usr/share/doc/ka-kemi/' || true)
    [ -z "$bad" ] || { echo "unexpected in the .deb: $bad"; return 1; }
    ! dpkg-deb -c "$work"/ka-kemi_*_all.deb | grep -E '/(tests|bench|soak|docker)/|__pycache__'
}
make_root() {
    local suite=$1 mirror
    mirror=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
             /etc/apt/sources.list.d/*.list 2>/dev/null | grep -oE 'https?://[^ ]+/debian/?( |$)' |
             grep -v security | head -1 | tr -d ' ' || true)
    rmdir "$root"
    mmdebstrap --quiet --variant=apt --include=netbase "$suite" "$root" \
        "deb ${mirror:-http://deb.debian.org/debian} $suite main"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > "$root/etc/hosts"
    mount -t proc proc "$root/proc"
    mkdir -p "$root/dev/shm" && mount -t tmpfs -o mode=1777 shm "$root/dev/shm"  # as on a real system
    : > "$work/syslog"
    python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666)
with open(sys.argv[2], "ab", buffering=0) as f:
    while True: f.write(s.recv(65536).rstrip(b"\n") + b"\n")' "$root/dev/log" "$work/syslog" &
    echo $! > "$work/logger.pid"
}
install_deb() {
    cp "$work"/ka-kemi_*_all.deb "$root/tmp/"
    in_root "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends /tmp/ka-kemi_*_all.deb"
    in_root "dpkg -L ka-kemi" > "$work/files"
    [ "$(stat -c '%U:%G %a' "$root/var/lib/ka-kemi" | sed 's/^/x/')" ] &&
        in_root "stat -c '%U:%G %a' /var/lib/ka-kemi" | grep -qx 'kamailio:kamailio 750'
    in_root "useradd -M -G kamailio ka-operator && useradd -M ka-outsider"
    # the documented step: point Debian's kamailio.service at the example
    echo 'CFGFILE=/etc/kamailio/ka-kemi.cfg' >> "$root/etc/default/kamailio"
}
unit_value() {  # the last KEY= line of the installed kamailio.service
    grep -h "^$1=" "$root"/usr/lib/systemd/system/kamailio.service | tail -1 | cut -d= -f2-
}
start_like_systemd() {  # $1: extra kamailio options (the wheel check only)
    local user group env cmd mode
    user=$(unit_value User) group=$(unit_value Group) mode=$(unit_value RuntimeDirectoryMode)
    [ "$user" = kamailio ] && [ "$group" = kamailio ]
    env=$(grep -h '^Environment=' "$root"/usr/lib/systemd/system/kamailio.service |
          sed -E "s/^Environment=//; s/^'(.*)'$/\\1/" | tr '\n' ' ')
    cmd="$(unit_value ExecStart) ${1:-}"
    # RuntimeDirectory=kamailio: created for the start, removed on stop
    rm -rf "$root/run/kamailio"
    in_root "install -d -o $user -g $group -m $mode /run/kamailio"
    unshare --net -- /bin/sh -c "ip link set lo up && exec chroot '$root' setpriv --reuid=$user \
        --regid=$group --init-groups env -i $env /bin/sh -c 'set -a; \
        [ -r /etc/default/kamailio ] && . /etc/default/kamailio; \
        for f in /etc/default/kamailio.d/*; do [ -r \"\$f\" ] && . \"\$f\"; done; exec $cmd'"
    for _ in $(seq 100); do
        [ -s "$root/run/kamailio/kamailio.pid" ] && [ -S "$root/run/kamailio/kamailio_ctl" ] && break
        sleep 0.1
    done
    [ "$(stat -c %u "/proc/$(cat "$root/run/kamailio/kamailio.pid")")" = "$(in_root "id -u kamailio")" ]
}
stop_like_systemd() {
    local main
    main=$(cat "$root/run/kamailio/kamailio.pid")
    kill -TERM "$main"
    for _ in $(seq 100); do [ -z "$(kamailio_pids)" ] && break; sleep 0.2; done
    [ -z "$(kamailio_pids)" ]
    rm -rf "$root/run/kamailio"
}
wait_listing() {  # wait_listing AS_USER PATTERN...: kamcmd keepalive.list shows every pattern
    local who=$1 out
    shift
    for _ in $(seq 60); do
        out=$(in_root "runuser -u $who -- kamcmd keepalive.list" 2>&1 || true)
        local all=1
        for pat in "$@"; do grep -qzE "$pat" <<<"$out" || all=0; done
        [ "$all" = 1 ] && { echo "$out"; return 0; }
        sleep 0.5
    done
    echo "$out"
    return 1
}
UP='uri: sip:127.0.0.1:5060[^}]*state: 1'
DOWN='uri: sip:127.0.0.1:5999[^}]*state: 2'
ADDED='uri: sip:127.29.0.1:5060[^}]*owner: ka-install[^}]*state: 2'
sockets_closed_to_others() {
    in_root "stat -c '%a %U:%G' /run/kamailio" | grep -qx '770 kamailio:kamailio'
    in_root "stat -c '%a %U:%G %n' /run/kamailio/kamailio_ctl /run/kamailio/kamailio_rpc.sock" |
        awk '$1 != "660" || $2 != "kamailio:kamailio" {bad=1} END {exit bad}'
}
outsider_refused() {
    local out rc=0
    out=$(in_root "runuser -u ka-outsider -- kamcmd keepalive.list" 2>&1) || rc=$?
    echo "$out"
    [ "$rc" != 0 ] && grep -q "Permission denied" <<<"$out" && ! grep -q "uri:" <<<"$out"
}
add_and_persist() {
    in_root "runuser -u ka-operator -- kamcmd keepalive.add sip:127.29.0.1:5060 ka-install"
    wait_listing ka-operator "$ADDED"
    for _ in $(seq 20); do grep -q "127.29.0.1" "$root/var/lib/ka-kemi/keepalive.state" 2>/dev/null && break; sleep 0.25; done
    grep -q "127.29.0.1" "$root/var/lib/ka-kemi/keepalive.state"
}
restored_after_restart() {
    stop_like_systemd
    start_like_systemd
    wait_listing ka-operator "$ADDED" "$UP" "$DOWN"
    grep -q "runtime destinations added back" "$work/syslog"
}
purge_leaves_nothing() {
    stop_like_systemd
    in_root "DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq ka-kemi"
    local left=""
    while read -r f; do
        [ "$f" != /. ] && [ -e "$root$f" ] || continue
        # a directory another package also owns (/usr, /etc/kamailio) stays
        [ -d "$root$f" ] && in_root "dpkg -S '$f'" >/dev/null 2>&1 && continue
        left="$left $f"
    done < "$work/files"
    [ -z "$left" ] || { echo "left after purge:$left"; return 1; }
    [ ! -e "$root/var/lib/ka-kemi" ] && [ ! -e "$root/etc/kamailio/ka-kemi.cfg" ]
}
wheel_runs() {
    cp "$work"/ka_kemi-*.whl "$root/tmp/"
    in_root "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null"
    in_root "pip install -q --no-deps --break-system-packages /tmp/ka_kemi-*.whl"
    local script share
    script=$(in_root "python3 -B -c 'import kemi, os; print(os.path.dirname(kemi.__file__))'")/example.py
    share=/usr/local/share/ka-kemi
    [ -f "$root$script" ] && [ -f "$root$share/kamailio.cfg" ] && [ -f "$root$share/kamcli.ini" ]
    sed -i '/^CFGFILE=/d' "$root/etc/default/kamailio"
    echo "CFGFILE=$share/kamailio.cfg" >> "$root/etc/default/kamailio"
    start_like_systemd "-A KA_SCRIPT=\\\"$script\\\""
    wait_listing ka-operator "$UP" "$DOWN"
    in_root "runuser -u ka-operator -- kamcmd keepalive.version" | grep -q "^ka-kemi "
    stop_like_systemd
    in_root "pip uninstall -q -y --break-system-packages ka-kemi"
    [ ! -e "$root$script" ]
}

export work repo UP DOWN ADDED
export -f kamailio_pids in_root build check_contents make_root install_deb unit_value \
    start_like_systemd stop_like_systemd wait_listing sockets_closed_to_others \
    outsider_refused add_and_persist restored_after_restart purge_leaves_nothing wheel_runs
step "build the .deb and the wheel from a clean clone of $(git rev-parse --short HEAD)" 300 build
step "wheel and .deb hold ka_core, kemi and the examples only" 60 check_contents
for suite in "$@"; do
    t_suite=$(date +%s)
    root=$(mktemp -d /var/tmp/ka-kemi-root-XXXXXX)
    export root
    step "$suite: fresh root" 300 make_root "$suite"
    step "$suite: apt-get install ./ka-kemi.deb (/var/lib/ka-kemi kamailio:kamailio 0750)" 300 install_deb
    step "$suite: started as kamailio.service's ExecStart, user kamailio" 60 start_like_systemd
    step "$suite: kamcmd as a kamailio group member sees UP and DOWN" 60 wait_listing ka-operator "$UP" "$DOWN"
    step "$suite: /run/kamailio 0770, kamcmd/kamcli sockets 0660 kamailio:kamailio" 30 sockets_closed_to_others
    step "$suite: a user outside group kamailio is refused" 30 outsider_refused
    step "$suite: keepalive.add written to /var/lib/ka-kemi/keepalive.state" 60 add_and_persist
    step "$suite: restart keeps the runtime destination and the states" 90 restored_after_restart
    step "$suite: purge leaves none of the package's files nor /var/lib/ka-kemi" 120 purge_leaves_nothing
    step "$suite: wheel via pip --break-system-packages runs the example" 300 wheel_runs
    close_root
    echo "PASS $suite ($(( $(date +%s) - t_suite )) s)"
done
echo "PASS install tests: $* in $(( $(date +%s) - t_all )) s"
