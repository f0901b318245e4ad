#!/bin/bash
# Run a command with another Debian suite's Kamailio (tests/matrix/build-root.sh):
#   bash tests/matrix/with-root.sh trixie CMD [ARGS...]
# CMD runs on the host; the harness (tests/harness/kamailio.py) starts Kamailio as
# `chroot <root> kamailio ...` because KA_KAMAILIO_ROOT is set, with the repository, /tmp,
# /run, /proc, /sys and /dev bind-mounted at the same paths, so sockets, certificates, the
# script and the ka-kemi code are where the cfg says.  Peers, kamcmd and netns hosts are the
# host's.  The integration suite (tests/matrix/run.sh) and `make bench KAMAILIO=6.0` use it.
# The mounts are removed on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/../.."
suite=${1:?usage: with-root.sh trixie|sid CMD [ARGS...]}
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
echo "$suite root: $(chroot "$root" kamailio -v | head -1); embedded $(chroot "$root" python3 --version)"
export KA_KAMAILIO_ROOT=$root
"$@"
