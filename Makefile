# make demo  - set up, build the sample appliances, certify them
# make test  - set up, run the test suite
# make setup - idempotent: Debian packages, .venv, editable install

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
APT_PACKAGES := libguestfs-tools libguestfs-xfs python3-guestfs nftables python3-nftables conntrack dropbear-bin \
	qemu-utils python3-venv iproute2 chromium postgresql linux-image-$(ARCH)
DEMO := build/demo

.PHONY: setup demo demo-admit test clean

setup: $(VENV)/.installed

# Installs only what is missing, so a machine that has everything pays nothing.
$(VENV)/.apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@ls /boot/vmlinuz-* >/dev/null 2>&1 || { echo "no kernel in /boot: libguestfs needs one" >&2; exit 1; }
	@[ -x $(PY) ] || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	@touch $@

$(VENV)/.installed: $(VENV)/.apt pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

demo: setup
	@mkdir -p $(DEMO)
	$(PY) -m certify.sample $(DEMO)
	@[ -f $(DEMO)/signing ] || $(VENV)/bin/certify keygen -o $(DEMO)/signing
	@echo; echo "== a clean appliance: certified, with a signed certificate =="
	$(VENV)/bin/certify scan $(DEMO)/clean-appliance.ova --certificate $(DEMO)/clean-appliance.cert.json --key $(DEMO)/signing
	$(VENV)/bin/certify verify-certificate $(DEMO)/clean-appliance.cert.json $(DEMO)/clean-appliance.ova --key $(DEMO)/signing.pub
	@echo; echo "== an appliance a vendor forgot to clean (not certified: exit 1 is the expected outcome) =="
	@mkdir -p $(DEMO)/dirty-report
	$(VENV)/bin/certify scan $(DEMO)/dirty-appliance.ova --profile oci-marketplace \
		--format text,json,sarif,junit,html -o $(DEMO)/dirty-report || [ $$? -eq 1 ]
	@cat $(DEMO)/dirty-report/report.txt
	@echo "reports in every format: $(DEMO)/dirty-report/ (open report.html in a browser)"
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory demo-admit; \
	else echo; echo "(admission and isolation need root: run 'make demo-admit' as root)"; fi

# Admit the certified appliance into a tenant vDC of examples/provider.yaml, behind verified isolation.
ISO := $(VENV)/bin/certify isolation
ISO_ARGS := --config examples/provider.yaml --registry $(DEMO)/admissions.sqlite
demo-admit:
	@echo; echo "== isolation for examples/provider.yaml: apply, then prove it with packets =="
	$(ISO) apply $(ISO_ARGS)
	$(ISO) verify $(ISO_ARGS)
	@echo; echo "== admit the certified appliance into vDC acme-dev =="
	$(VENV)/bin/certify admit $(DEMO)/clean-appliance.ova --certificate $(DEMO)/clean-appliance.cert.json \
		--key $(DEMO)/signing.pub --vdc acme-dev --service tcp/8080 $(ISO_ARGS)
	$(VENV)/bin/certify admissions $(ISO_ARGS)
	@echo; echo "== what the tenant of acme-dev sees =="
	$(ISO) status --vdc acme-dev $(ISO_ARGS)
	@echo; echo "== evict, then remove every namespace and table the demo made =="
	$(VENV)/bin/certify evict clean-appliance --vdc acme-dev $(ISO_ARGS)
	$(ISO) teardown $(ISO_ARGS)

test: setup
	$(PY) -m pytest

clean:
	rm -rf build .pytest_cache
