# ka-kemi: the Makefile is the CI script. `make run` and `make test` do all set-up themselves.
SHELL := /bin/bash
PY    ?= python3
VENV  := .venv
VPY   := $(VENV)/bin/python
APT_PACKAGES := kamailio kamailio-python3-modules kamailio-extra-modules kamailio-utils-modules \
	kamailio-json-modules kamailio-tls-modules sip-tester kamcli iproute2 procps curl openssl python3 python3-venv \
	prometheus

.PHONY: install install-system install-venv run test unit itest fuzz soak check lint typecheck clean

install: install-system install-venv

# $(call apt_ensure,PACKAGES): apt runs only when one of them is missing (idempotent).
define apt_ensure
	@missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

install-system:
	$(call apt_ensure,$(APT_PACKAGES))

$(VENV)/.stamp: requirements-test.txt
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip >/dev/null
	$(VPY) -m pip install -q -r requirements-test.txt
	touch $@

install-venv: $(VENV)/.stamp

# Main job: Kamailio in the foreground with kamailio.cfg and the module on 127.0.0.1:5060.
run: install-system
	mkdir -p /run/kamailio
	kamailio -f kamailio.cfg -DD -E -w $(CURDIR) -m 64 -M 16

# Everything: lint, types, unit tests (with kemi/'s coverage), integration tests, then the
# container tier.
CONTAINER_SUITES ?= bookworm trixie
export CONTAINER_SUITES
# Install tier (tests/matrix/install.sh, docs/install.md): the .deb and the wheel in fresh roots.
INSTALL_SUITES ?= bookworm trixie
test: export KA_REQUIRE_ALL_TIERS = 1
test: install check unit
	@echo "host tier: $$(kamailio -v | head -1); embedded $$(/usr/bin/python3 --version)"
	$(VPY) -m pytest tests/integration -m "not containers"
	@if [ -n "$(strip $(CONTAINER_SUITES))" ]; then bash docker/ci-tier.sh; \
	 else echo "container tier: not run here (CONTAINER_SUITES is empty)"; fi
	@if [ -n "$(strip $(INSTALL_SUITES))" ]; then bash tests/matrix/install.sh $(INSTALL_SUITES); \
	 else echo "install tier: not run here (INSTALL_SUITES is empty)"; fi
	@if [ -n "$(strip $(MATRIX) $(FRESH))" ]; then $(MAKE) matrix; \
	 else echo "version matrix: not run here (MATRIX and FRESH are empty)"; fi

# kemi/ runs on a FakeKsr here: at least 80 % of its lines must be covered without Kamailio.
unit: install-venv
	$(VPY) -m pytest tests/unit --cov=kemi --cov-report=term --cov-fail-under=80

itest: install
	$(VPY) -m pytest tests/integration -m "not containers"

# Property tests (URI parsing, state machine, BINRPC codec) with 10,000 cases each.
fuzz: install-venv
	KA_HYPOTHESIS_EXAMPLES=10000 $(VPY) -m pytest tests/unit -q --timeout=3600

# Bounded soak (not part of `make test`): SOAK_MINUTES=20 by default.
SOAK_MINUTES ?= 20
soak: install
	$(VPY) -m soak.soak --minutes $(SOAK_MINUTES)

check: lint typecheck

lint: install-venv
	$(VENV)/bin/ruff check ka_core kemi tests soak docker bench
	$(VENV)/bin/ruff format --check ka_core kemi tests soak docker bench

typecheck: install-venv
	$(VENV)/bin/mypy

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache

# Version matrix (tests/matrix/): the README's two commands on a fresh, minimal Debian 13 root
# (Kamailio 6.0.1 / Python 3.13: lint, unit and the whole integration suite run there), and the
# integration suite against Kamailio 6.1.5 / Python 3.14 in a sid chroot.
MATRIX ?= sid
FRESH  ?= trixie
.PHONY: matrix
matrix: install
	@for suite in $(FRESH); do bash tests/matrix/fresh-root.sh $$suite || exit 1; done
	@for suite in $(MATRIX); do bash tests/matrix/run.sh $$suite -q || exit 1; done

# Container tier: docker-compose.yml under podman-compose, driven by pytest (docs/containers.md).
.PHONY: containers
containers:
	bash docker/ci-tier.sh

# Benchmarks against the C keepalive module (bench/, docs/benchmarks.md): full set < 20 min,
# then the results page; QUICK=1 is the < 3 min smoke mode (docs untouched).
# KAMAILIO=6.0 (or 6.1): both modules of that version, in a chroot (tests/matrix/), routing
# path and 1,000/10,000 destinations, written to the page's section for that version.
BENCH_SUITE_6.0 := trixie
BENCH_SUITE_6.1 := sid
.PHONY: bench
# tcpdump: the detection benchmark times failures from the wire.
bench: install
	$(call apt_ensure,tcpdump)
ifeq ($(KAMAILIO),)
	$(VPY) -m bench.run_all $(if $(QUICK),--quick,--report)
else
	bash tests/matrix/with-root.sh $(BENCH_SUITE_$(KAMAILIO)) $(VPY) -m bench.run_all \
		--only routing_cost ping_scale --sizes 1000 10000 --version-section $(KAMAILIO) \
		$(if $(QUICK),--quick,--report)
endif

# Debian package (docs/install.md): dist/ka-kemi_<version>_all.deb from the files git knows
# (committed or not, never __pycache__ or .venv), then lintian.  Installs the build tools
# it needs (debhelper, dh-python, lintian) when they are missing.
DEB_BUILD_PACKAGES := debhelper dh-python dpkg-dev fakeroot lintian python3 git
.PHONY: deb wheel
deb:
	$(call apt_ensure,$(DEB_BUILD_PACKAGES))
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; mkdir "$$tmp/src"; \
	git ls-files -z --cached --others --exclude-standard | \
		xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' | \
		tar -c --null -T - | tar -x -C "$$tmp/src"; \
	(cd "$$tmp/src" && dpkg-buildpackage -b -us -uc >"$$tmp/build.log" 2>&1) || \
		{ tail -n 40 "$$tmp/build.log"; exit 1; }; \
	mkdir -p dist; cp "$$tmp"/ka-kemi_*_all.deb dist/; \
	deb=$$(ls "$$tmp"/ka-kemi_*_all.deb); echo "built dist/$$(basename $$deb)"; \
	lintian --fail-on error,warning --suppress-tags-from-file debian/lintian-explained \
		--info --display-info "dist/$$(basename $$deb)"

# The wheel (dist/ka_kemi-<version>-py3-none-any.whl): ka_core and kemi, nothing else.
wheel: install-venv
	$(VPY) -m pip wheel -q --no-deps -w dist .
