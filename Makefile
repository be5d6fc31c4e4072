# Membrane: every target installs what it needs on a bare Debian 12 machine (run as root).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := clang llvm libbpf-dev bpftool etcd-server etcd-client iproute2 iputils-ping iputils-arping curl iperf3 iptables nftables dnsutils gcc gcc-multilib util-linux procps tcpdump chromium chromium-driver wireguard-go wireguard-tools frr kcat
BPF_SRC := $(wildcard bpf/*.c)
BPF_OBJ := $(patsubst bpf/%.c,build/bpf/%.o,$(BPF_SRC))
BPF_HDR := $(wildcard bpf/lib/*.h)
LAB ?= membrane

.PHONY: setup deps venv bpf bpffs cni pause test unit lint demo demo-down bench clean hubble-cli

setup: deps venv bpf bpffs cni pause

# apt packages: only when something is missing, so repeated runs stay fast.
deps: .deps-stamp
.deps-stamp: Makefile
	@missing=""; for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	@touch $@

venv: $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat
	@touch $@

bpf: $(BPF_OBJ)
build/bpf/%.o: bpf/%.c $(BPF_HDR) | .deps-stamp
	@mkdir -p build/bpf
	clang -O2 -g -Wall -Werror -target bpf -D__TARGET_ARCH_x86 -I bpf/lib -I /usr/include/x86_64-linux-gnu -c $< -o $@

# The compiled CNI plugin (issue 16): forwards ADD/DEL/CHECK to the agent, execs membrane-cni otherwise.
cni: $(VENV)/bin/membrane-cni-shim
$(VENV)/bin/membrane-cni-shim: cni/membrane-cni-shim.c $(VENV)/.stamp | .deps-stamp
	gcc -O2 -Wall -Wextra -Werror -o $@ $<

# The lab's compiled pod sandbox process (issue 16): netns, UTS and mount namespace in one exec.
pause: $(VENV)/bin/membrane-pause
$(VENV)/bin/membrane-pause: lab/membrane-pause.c $(VENV)/.stamp | .deps-stamp
	gcc -O2 -Wall -Wextra -Werror -o $@ $<

bpffs:
	@mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

lint: venv
	$(VENV)/bin/ruff check membrane tests bench
	$(VENV)/bin/lint-imports

unit: venv
	$(VENV)/bin/pytest -q tests/unit

test: setup lint
	$(VENV)/bin/pytest -q -p no:cacheprovider tests

demo: setup
	$(VENV)/bin/python -m membrane.lab.demo --lab $(LAB)

demo-down: venv
	$(VENV)/bin/membrane --lab $(LAB) lab delete

bench: setup $(VENV)/.bench-stamp
	$(VENV)/bin/python -m bench

# the bench extra (matplotlib for the plots), on top of the dev venv
$(VENV)/.bench-stamp: $(VENV)/.stamp pyproject.toml
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev,bench]' --config-settings editable_mode=compat
	@touch $@

# the unmodified hubble CLI into build/hubble/bin (scripts/hubble-cli.sh); not part of `make test`
hubble-cli:
	scripts/hubble-cli.sh

clean:
	rm -rf build .deps-stamp
