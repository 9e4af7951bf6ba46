# The one task runner, for people and CI alike. Every target works on a fresh machine.

CARGO ?= cargo
VENV  := .venv
BIN   := target/release/akv-csi-provider

IMAGE ?= akv-csi-provider:0.1.0

.PHONY: all build demo bench fuzz-smoke test unit e2e lint fmt venv fixtures clean deploy-check image

all: build

## build: the release binary, exactly what ships
build:
	$(CARGO) build --release --locked -p akv-csi-provider

## demo: mount the orders-api SecretProviderClass through the test world and show the volume
demo: build
	$(CARGO) run --quiet --locked -p akv-e2e --bin demo

## bench: latency, rotation, throttling, start-up and certificate figures of the release binary
## on the test world, printed as Markdown tables (a few minutes; needs openssl for the PFX part;
## BENCH="latency burst" runs only those measurements)
bench: build
	$(CARGO) run --release --quiet --locked -p akv-e2e --bin bench -- $(BENCH)

## test: every test: unit, e2e through the release binary, and the Python SDK fidelity check
test: build venv deploy-check
	$(CARGO) test --locked --workspace

## lint: formatting and clippy, warnings as errors
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## venv: Microsoft's official Python SDKs, for the fidelity check of the doubles
venv: $(VENV)/.installed
$(VENV)/.installed: e2e/fidelity/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r e2e/fidelity/requirements.txt
	touch $@

## deploy-check: render every kustomization in deploy/ and validate it offline (needs kubectl)
deploy-check: $(VENV)/.deploy-installed
	@command -v kubectl >/dev/null || { echo "deploy-check needs kubectl (for kubectl kustomize)"; exit 1; }
	$(VENV)/bin/python deploy/check.py
$(VENV)/.deploy-installed: deploy/requirements.txt
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r deploy/requirements.txt
	touch $@

## image: the container image (needs a Docker engine); prints its size
image:
	docker build --tag $(IMAGE) .
	@docker image inspect --format '$(IMAGE): {{.Size}} bytes' $(IMAGE)

## fuzz-smoke: every fuzz target for 20 s (needs a nightly toolchain; installs cargo-fuzz)
fuzz-smoke:
	command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	cd fuzz && for target in pkcs12 pem jwk objects; do \
		mkdir -p corpus/$$target && \
		cargo +nightly fuzz run -O -a $$target corpus/$$target ../e2e/fixtures/certs -- -max_total_time=20 || exit 1; \
	done

## fixtures: rebuild every certificate, key and PFX the tests use (needs openssl 3)
fixtures:
	bash e2e/fixtures/generate.sh

clean:
	$(CARGO) clean
	rm -rf $(VENV)
