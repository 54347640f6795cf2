# intent-fleet: every set-up step a fresh machine needs lives here.
#
#   make demo    embedded bus + sidecar + the Python example handler, intents flowing
#   make test    lint + the whole test suite (what .ci/run calls)
#   make lint    ruff + mypy --strict + import-linter
#   make bench   benchmarks that print figures (valgrind for the instruction counts)
#   make cluster-demo  the same on Kubernetes: node up, helm install, an IntentWorker, 200 intents
#   make images  the sidecar, operator and example images, as OCI archives in the cache
#   make cluster-up PROFILE=control-plane|node / make cluster-down
#                a local single-node Kubernetes built from Go modules (hack/cluster)
#
# Caches live outside the repo, in $(CACHE) (override with INTENT_FLEET_CACHE):
# the compatibility virtualenvs for the published SDKs are built there once, and the
# cluster's binaries (k8s-<v>/, etcd-<v>/, helm-<v>/) and images (images/) are kept there.
# Go's own caches stay where `go env GOCACHE GOMODCACHE` says.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CACHE  ?= $(or $(INTENT_FLEET_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/intent-fleet)
export INTENT_FLEET_CACHE := $(CACHE)

.PHONY: setup demo test lint unit integration bench bench-deps db-deps browser-deps clean images cluster-demo cluster-deps cluster-build cluster-images cluster-up cluster-down

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/intent-fleet demo -- $(BIN)/python examples/handlers/python/handler.py

lint: setup
	$(BIN)/ruff check src tests bench hack/cluster
	$(BIN)/ruff format --check src tests bench hack/cluster
	$(BIN)/mypy
	$(BIN)/lint-imports

# The e2e tests bring the cluster up themselves; its binaries and images are prepared here.
test: lint cluster-build cluster-images bench-deps db-deps browser-deps
	$(BIN)/pytest -q -p no:cacheprovider

unit: setup
	$(BIN)/pytest -q tests/unit

integration: setup db-deps browser-deps bench-deps cluster-build
	$(BIN)/pytest -q tests/integration

bench: setup bench-deps db-deps browser-deps cluster-build cluster-images
	$(BIN)/python bench/bus.py --postgres
	$(BIN)/python bench/bus_instructions.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/sidecar.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/parsing.py
	$(BIN)/python bench/autoscale.py
	$(BIN)/python bench/cluster.py

# bench/bus_instructions.py counts instructions with valgrind (Debian's package).
bench-deps:
	@command -v valgrind >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }

# The bus's PostgreSQL backend is tested against Debian's PostgreSQL, which the tests start
# and stop themselves (tests/support/postgres.py); the package must not start a cluster of
# its own, so its main cluster is not created.
db-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		mkdir -p /etc/postgresql-common/createcluster.d && \
		echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/intent-fleet.conf && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

# The dashboard is tested in Debian's headless Chromium, driven by Playwright (a dev
# dependency) pointed at it: no browser is downloaded.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

PROFILE ?= control-plane
# What the node profile needs from Debian: the runtime, the CNI plugins, the image tools, and
# socat (the API server's forwarder onto the pod bridge).
CLUSTER_PACKAGES := containerd runc containernetworking-plugins buildah debootstrap iptables socat

cluster-deps:
	@missing=$$(for p in $(CLUSTER_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

cluster-build:
	hack/cluster/build.sh

# Images are built with buildah from a debootstrapped base (cached) and imported at `up`.
cluster-images: cluster-deps setup
	hack/cluster/images.sh all

# The project's images alone (for kind, k3d or a registry: charts/intent-fleet/README.md).
images: cluster-deps setup
	hack/cluster/images.sh project

cluster-up: setup cluster-build $(if $(filter node,$(PROFILE)),cluster-images)
	$(BIN)/python hack/cluster/cluster.py up --profile $(PROFILE)

# The main job on Kubernetes, for a newcomer on a root Linux machine (README.md, "On Kubernetes").
cluster-demo: setup cluster-build cluster-images
	$(BIN)/python hack/cluster/cluster.py demo

cluster-down: setup
	$(BIN)/python hack/cluster/cluster.py down

clean:
	rm -rf $(VENV) build dist src/*.egg-info
