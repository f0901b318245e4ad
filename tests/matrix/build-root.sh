#!/bin/bash
# A Debian root with another suite's Kamailio and Python, for the version matrix:
#   ROOT=$(tests/matrix/build-root.sh trixie)     # prints the root's path as its only stdout line
# trixie: Kamailio 6.0.1 + Python 3.13; sid: Kamailio 6.1.5 + Python 3.14.  Built with
# mmdebstrap from the machine's own Debian mirror (tests/matrix/apt-mirror.sh: its apt sources only), only when
# missing; the path carries a hash of the package list.  sid's Release file on the mirror may
# be expired, so validity is not checked for sid/forky.
set -euo pipefail
suite=${1:?usage: build-root.sh trixie|sid}
PACKAGES=kamailio,kamailio-python3-modules,kamailio-extra-modules,kamailio-utils-modules,kamailio-json-modules,kamailio-tls-modules,python3,openssl,iproute2,procps,netbase
root=/var/tmp/ka-kemi-roots/$suite-$(echo "$PACKAGES" | sha256sum | cut -c1-8)
if [ -x "$root/usr/sbin/kamailio" ]; then
    echo "$root"
    exit 0
fi
exec 3>&1 1>&2
command -v mmdebstrap >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null 2>&1 ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null; }
}
mirror=$(bash "$(dirname "$0")/apt-mirror.sh")  # the machine's own; none: a clear error
opts=()
case $suite in sid|forky|unstable) opts+=(--aptopt='Acquire::Check-Valid-Until "false"') ;; esac
start=$(date +%s)
rm -rf "$root.tmp"
mkdir -p "$(dirname "$root")"
mmdebstrap --quiet --variant=apt --include="$PACKAGES" "${opts[@]}" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$suite" "$root.tmp" "deb $mirror $suite main"
# mmdebstrap leaves no /etc/hosts: Kamailio in the root must resolve localhost like the host
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root.tmp/etc/hosts"
mv "$root.tmp" "$root"
echo "root $root ($suite) built in $(( $(date +%s) - start )) s: $(chroot "$root" kamailio -v | head -1)"
echo "$root" >&3
