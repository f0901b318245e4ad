#!/bin/bash
# Build the local base image for the container tier, only when it is missing:
#   BASE_IMAGE=$(docker/build-base.sh)        # prints the image name as its only stdout line
#   BASE_IMAGE=$(SUITE=trixie docker/build-base.sh)   # Debian 13: Kamailio 6.0.1, Python 3.13
# The tag is <suite>-<hash of the package list>, so changing the list builds a new base.
# Another suite is taken from the same mirrors as the machine's bookworm sources
# (bookworm-updates -> trixie-updates, bookworm-security -> trixie-security).
# No image can be pulled on the CI machines, so the base is made with mmdebstrap from the
# machine's own apt sources (read from /etc/apt, never hard-coded) and imported into podman.
# It already holds every package the Dockerfiles install, so their RUN steps do nothing offline.
set -euo pipefail
# Keep in step with the PACKAGES of docker/Dockerfile.kamailio (and python3 of Dockerfile.peer).
PACKAGES=kamailio,kamailio-python3-modules,kamailio-extra-modules,kamailio-utils-modules,kamailio-json-modules,sip-tester,python3,iproute2,procps,netbase
SUITE=${SUITE:-bookworm}
IMAGE=${1:-localhost/ka-kemi-base:$SUITE-$(echo "$PACKAGES" | sha256sum | cut -c1-8)}

if podman image exists "$IMAGE"; then
    echo "base image $IMAGE present" >&2
    echo "$IMAGE"
    exit 0
fi
exec 3>&1 1>&2      # progress to stderr; only the name goes to stdout
command -v mmdebstrap >/dev/null || { echo "build-base.sh: mmdebstrap is not installed" >&2; exit 1; }

# One "deb URI SUITE COMPONENTS" line per bookworm* suite of every enabled apt source.
mapfile -t MIRRORS < <(SUITE=$SUITE python3 - <<'PY'
import glob, os, re
target = os.environ["SUITE"]
lines = []
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        f = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            k, v = line.split(":", 1)
            f[k.strip().lower()] = v.split()
        if "deb" not in f.get("types", []) or f.get("enabled", ["yes"])[0] == "no":
            continue
        for uri in f.get("uris", []):
            for suite in f.get("suites", []):
                if suite.startswith("bookworm"):
                    suite = target + suite.removeprefix("bookworm")
                    lines.append(f"deb {uri} {suite} {' '.join(f.get('components', ['main']))}")
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        text = open(path).read()
    except OSError:
        continue
    for line in text.splitlines():
        m = re.match(r"\s*deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(bookworm\S*)\s+(.*)", line)
        if m:
            suite = target + m.group(3).removeprefix("bookworm")
            lines.append(f"deb {m.group(2)} {suite} {m.group(4).split('#')[0].strip()}")
print("\n".join(dict.fromkeys(lines)))
PY
)
[ "${#MIRRORS[@]}" -gt 0 ] && [ -n "${MIRRORS[0]}" ] || {
    echo "build-base.sh: no bookworm source found in /etc/apt/sources.list{,.d/*}" >&2; exit 1; }
printf 'base image %s from:\n' "$IMAGE"; printf '  %s\n' "${MIRRORS[@]}"

start=$(date +%s)
mmdebstrap --quiet --variant=apt --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$SUITE" - "${MIRRORS[@]}" \
  | podman import -q --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "base image $IMAGE built in $(( $(date +%s) - start )) s"
echo "$IMAGE" >&3
