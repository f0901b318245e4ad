#!/bin/bash
# The container test tier (CI, `make containers`): podman + runc + podman-compose 1.6.0, no daemon.
#   1. apt-installs podman, runc, mmdebstrap when missing;
#   2. creates .venv-ctr with podman-compose==1.6.0 (and .venv with the test tools) when missing;
#   3. uses docker/containers.conf (lowered ulimits, runc, cgroupfs) through CONTAINERS_CONF;
#   4. builds the base images (bookworm, trixie) from the machine's apt mirrors when missing
#      (docker/build-base.sh);
#   5. runs .venv/bin/pytest tests/containers -m containers on each base (pytest-docker brings
#      the compose stack up and down).  CONTAINER_SUITES="bookworm" runs one.
# Extra arguments go to pytest.  See docs/containers.md.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)

missing=""
for p in podman runc mmdebstrap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "ci-tier: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq $missing >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq $missing >/dev/null; }
fi

if [ ! -x .venv-ctr/bin/podman-compose ]; then
    echo "ci-tier: creating .venv-ctr (podman-compose==1.6.0)"
    python3 -m venv .venv-ctr
    .venv-ctr/bin/pip install -q podman-compose==1.6.0
fi
[ -x .venv/bin/pytest ] || make install-venv

export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/docker/containers.conf}
# Debian 12 (Kamailio 5.6.3) and Debian 13 (6.0.1): the same compose file on either base.
for suite in ${CONTAINER_SUITES:-bookworm trixie}; do
    BASE_IMAGE=$(SUITE=$suite bash docker/build-base.sh)
    export BASE_IMAGE
    echo "ci-tier: $suite ready in $(( $(date +%s) - t0 )) s (base image $BASE_IMAGE)"
    .venv/bin/pytest tests/containers -m containers "$@"
done
