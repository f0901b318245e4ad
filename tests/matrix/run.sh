#!/bin/bash
# One tier of the version matrix: the integration suite against another Debian suite's
# Kamailio and embedded Python, Kamailio in a chroot (tests/matrix/with-root.sh).
#   bash tests/matrix/run.sh sid [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/../.."
suite=${1:?usage: run.sh trixie|sid [pytest args]}
shift
exec bash tests/matrix/with-root.sh "$suite" \
    .venv/bin/pytest tests/integration -m "not containers" -p no:cacheprovider "$@"
