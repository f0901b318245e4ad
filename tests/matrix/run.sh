#!/bin/bash
# One tier of the version matrix: the integration suite against another Debian suite's
# Kamailio and embedded Python (tests/matrix/build-root.sh), run in a chroot.
#   bash tests/matrix/run.sh trixie [pytest args...]
# The tests themselves run on the host (.venv); the harness starts Kamailio as
# `chroot <root> kamailio ...` (KA_KAMAILIO_ROOT), with the repository, /tmp, /run, /proc,
# /sys and /dev bind-mounted at the same paths, so sockets, certificates, the script and the
# ka-kemi code are where the cfg says.  Peers, kamcmd and netns hosts are the host's.
# The mounts are removed on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/../.."
suite=${1:?usage: run.sh trixie|sid [pytest args]}
shift
root=$(bash tests/matrix/build-root.sh "$suite")
repo=$PWD
mounted=()
cleanup() {
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -R "${mounted[$i]}" || umount -lR "${mounted[$i]}" || true; done
}
trap cleanup EXIT
for dir in /proc /sys /dev /tmp /run "$repo"; do
    mkdir -p "$root$dir"
    if ! mountpoint -q "$root$dir"; then
        mount --rbind "$dir" "$root$dir"
        mount --make-rslave "$root$dir"
        mounted+=("$root$dir")
    fi
done
kversion=$(chroot "$root" kamailio -v | head -1)
pversion=$(chroot "$root" python3 --version)
echo "matrix $suite: $kversion; embedded $pversion"
export KA_KAMAILIO_ROOT=$root
.venv/bin/pytest tests/integration -m "not containers" -p no:cacheprovider "$@"
