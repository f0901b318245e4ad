#!/usr/bin/env bash
# Entry point on a fresh Debian 12 (as root): installs make and Python's venv if missing, then
# runs `make <target>` (run | test | ...). The Makefile installs Kamailio and the test tools.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v make >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends make python3 python3-venv >/dev/null
fi
exec make "${@:-test}"
