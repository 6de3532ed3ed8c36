# replbox: `make run` serves the app, `make test` runs every test.
# Each step installs or builds what it needs and skips what is already there.

AGENT := target/x86_64-unknown-linux-gnu/release/replbox-agent
CARGO ?= cargo

.PHONY: run test unit bench docker image agent frontend browser pydeps haproxy check clean-test-sandboxes gvisor test-gvisor postgres kube kube-down test-kube

run: docker agent image frontend
	@echo "==> build: server (release)"
	@$(CARGO) build --release --quiet --bin replbox
	@echo "==> serving on http://127.0.0.1:8080 (Ctrl-C stops)"
	@./target/release/replbox

test: docker postgres agent image frontend browser pydeps haproxy
	@echo "==> test: unit, integration and browser tests against the Docker engine"
	@$(CARGO) test --workspace --quiet --no-fail-fast -- --test-threads=4 ; status=$$?; \
	  $(MAKE) --no-print-directory clean-test-sandboxes; exit $$status

bench: docker agent image frontend browser pydeps
	@echo "==> bench: release build against the real engine"
	@$(CARGO) build --release --quiet --bin replbox
	@$(CARGO) bench --quiet --bench replbox ; status=$$?; \
	  $(MAKE) --no-print-directory clean-test-sandboxes; exit $$status

docker:
	@./scripts/ensure-docker.sh

# PostgreSQL for the tests (every store test runs on SQLite and on it) and
# for several servers on one store: Debian's postgresql, a cluster of our
# own on 127.0.0.1:55432; prints the REPLBOX_DATABASE_URL to use.
postgres:
	@./scripts/ensure-postgres.sh

# gVisor: runsc built from its Go module into ~/.cache/replbox (not the
# repository) and registered with our engine by SIGHUP (no restart).
gvisor: docker
	@./scripts/ensure-runsc.sh

# The sandbox, hostile-code and grading tests with every sandbox under
# gVisor (REPLBOX_RUNTIME=runsc). Not part of `make test`.
GVISOR_TESTS := sandbox hostile grading
test-gvisor: gvisor agent image
	@echo "==> test: $(GVISOR_TESTS) under gVisor (REPLBOX_RUNTIME=runsc)"
	@status=0; for t in $(GVISOR_TESTS); do \
	  REPLBOX_RUNTIME=runsc $(CARGO) test --quiet --test $$t -- --test-threads=2 || status=1; \
	done; $(MAKE) --no-print-directory clean-test-sandboxes; exit $$status

# A real single-node Kubernetes test cluster (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, containerd) built from
# Go modules into ~/.cache/replbox/kube and run on 127.0.0.1; skips what is
# built or running. Not part of `make test`. See docs/kubernetes.md.
kube: docker image
	@./scripts/ensure-kube.sh up

kube-down:
	@./scripts/ensure-kube.sh down

# Against that cluster: deploy/kubernetes/'s RBAC, a smoke test of one
# sandbox pod, tests/kube.rs (the backend), then the server itself as
# deploy/kubernetes/'s Deployment (scripts/test-kube.sh). Not part of `make test`.
test-kube: kube agent postgres
	@./scripts/test-kube.sh

# The front end: npm ci when the lock file changed, then esbuild.
frontend: static/node_modules/.package-lock.json
	@cd static && npm run build --silent

static/node_modules/.package-lock.json: static/package-lock.json
	@echo "==> npm ci (static/)"
	@cd static && npm ci --no-audit --no-fund --loglevel=error

# Python packages the tests and the bench use on the host (PyPI): nbformat
# validates saved notebooks; jupyter_client + ipykernel are the baseline of
# the notebook benchmark, websockets its client of our socket; mcp is the
# official MCP SDK that tests /mcp; jupyter_server (in gateway mode) and
# nbclient are the stock Jupyter clients that test /jupyter; schemathesis
# (4.x) fuzzes the REST API against its OpenAPI document (tests/fuzz.rs).
PY_PACKAGES := nbformat jupyter_client ipykernel websockets mcp jupyter_server nbclient
pydeps:
	@python3 -c "import nbformat, jupyter_client, ipykernel, websockets, mcp, jupyter_server, nbclient" 2>/dev/null || { \
	  echo "==> pip: $(PY_PACKAGES)"; \
	  python3 -m pip install --quiet --disable-pip-version-check $(PY_PACKAGES); }
	@python3 -c "import schemathesis, sys; sys.exit(not schemathesis.__version__.startswith('4.'))" 2>/dev/null || { \
	  echo "==> pip: schemathesis 4.x"; \
	  python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4.32,<5'; }

# Debian's HAProxy in front of two replicas (tests/replicas.rs).
haproxy:
	@./scripts/ensure-haproxy.sh

# Debian's Chromium for the browser tests (never a downloaded browser).
browser:
	@./scripts/ensure-chromium.sh

agent:
	@echo "==> build: static agent ($(AGENT))"
	@RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --quiet --release \
	  --target x86_64-unknown-linux-gnu -p replbox-agent

image: docker
	@./docker/build-image.sh

# The tests that need no engine, no browser and no root: unit tests of every
# crate and the agent's own tests (it runs on pipes).
unit:
	@$(CARGO) test --quiet --workspace --lib --bins
	@$(CARGO) test --quiet -p replbox-agent -p replbox-protocol

check:
	@echo "==> check: cargo fmt --check, cargo clippy -D warnings"
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Containers, volumes and workspace images left by tests or a bench that
# failed half-way (prefixes rbt- and rbb-).
clean-test-sandboxes:
	@ids=$$(docker ps -aq --filter label=replbox.managed | xargs -r docker inspect -f '{{.Id}} {{index .Config.Labels "replbox.managed"}}' | awk '$$2 ~ /^rb[tb]-/ {print $$1}'); \
	  [ -z "$$ids" ] || docker rm -f $$ids >/dev/null; \
	  vols=$$(docker volume ls -q | grep -E '^rb[tb]-' || true); \
	  [ -z "$$vols" ] || docker volume rm -f $$vols >/dev/null; \
	  for d in /var/lib/replbox/workspaces/rbt-* /var/lib/replbox/workspaces/rbb-*; do [ -e "$$d" ] || continue; \
	    umount -l "$$d" 2>/dev/null; rm -rf "$$d"; done; true
