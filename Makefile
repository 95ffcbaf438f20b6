# podnet — the two commands a fresh Debian machine needs: `make demo`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What podnet, its tests and demo need; benchmarks' anchors come with `make bench`.
APT_PACKAGES := nftables iproute2 util-linux procps curl gcc libc6-dev containernetworking-plugins iptables busybox-static podman crun conmon
BENCH_PACKAGES := wrk dnsmasq-base nginx haproxy
STAMP_APT := $(VENV)/.apt-stamp
STAMP_PIP := $(VENV)/.pip-stamp

.PHONY: all deps native demo test lint typecheck unit integration bench clean

all: deps

$(STAMP_APT): Makefile
	@mkdir -p $(VENV)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@touch $@

$(STAMP_PIP): pyproject.toml $(STAMP_APT)
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip >/dev/null
	@$(BIN)/pip install -q -e '.[dev]'
	@touch $@

# The CNI fast-path forwarder (C, no logic: see src/podnet/cni/fastpath.c).
FASTPATH := $(BIN)/podnet-cni-fast
$(FASTPATH): src/podnet/cni/fastpath.c $(STAMP_PIP)
	@cc -O2 -Wall -Wextra -Werror -o $@ -DPODNET_CNI_PY='"$(abspath $(BIN))/podnet-cni"' $<

# The proxy's hot pure modules compiled with mypyc, beside the venv, never in src/ (see
# src/podnet/proxy/native.py). Optional: when mypyc fails, or a source changed since, the proxy
# imports its .py files; the stamp only keeps make from retrying before a source changes.
NATIVE := $(VENV)/podnet-native/.make-stamp
$(NATIVE): $(wildcard src/podnet/proxy/*.py src/podnet/model/*.py) $(STAMP_PIP)
	-@$(BIN)/python -c 'from podnet.proxy.native import build; raise SystemExit(build())'
	@mkdir -p $(dir $@) && touch $@

native: $(NATIVE)

deps: $(STAMP_PIP) $(FASTPATH) $(NATIVE)

demo: deps
	$(BIN)/python -m podnet.demo

lint: deps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: deps
	$(BIN)/mypy

unit: deps
	$(BIN)/pytest -q tests/unit

integration: deps
	$(BIN)/pytest -q tests/integration

test: deps lint typecheck
	@$(BIN)/pytest -q -p no:cacheprovider tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# nginx and haproxy are anchors run by the benches in lab namespaces: a
# temporary policy-rc.d keeps apt from starting them as system services.
bench: deps
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  made=""; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; rc=$$?; \
	  if [ -n "$$made" ]; then rm -f /usr/sbin/policy-rc.d; fi; [ $$rc -eq 0 ] || exit $$rc; \
	fi
	$(BIN)/python bench/pods.py
	$(BIN)/python bench/cni.py
	$(BIN)/python bench/services_nft.py
	$(BIN)/python bench/services_dataplane.py
	$(BIN)/python bench/maglev.py
	$(BIN)/python bench/proxy.py --rounds 3
	$(BIN)/python bench/proxy_failover.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
