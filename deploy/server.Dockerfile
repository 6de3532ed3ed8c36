# The replbox server's image: the release binary on a Debian base (glibc).
# Build context: a directory holding the binary as `replbox`.
#
#   docker build -f deploy/server.Dockerfile --build-arg BASE=debian:trixie-slim -t replbox-server:TAG CONTEXT
#
# BASE defaults to the sandbox image, which is Debian trixie and is on every
# machine that runs replbox already (`make image`): `make test-kube` builds
# the server image on it because no registry is reachable there. Any
# trixie base works; the binary needs glibc and nothing else (the pages,
# scripts and migrations are in it).
ARG BASE=replbox-sandbox:latest
FROM ${BASE}
COPY replbox /usr/local/bin/replbox
# The data directory holds the deployment's token key (a Secret in
# Kubernetes); the store is PostgreSQL there.
ENV REPLBOX_ADDR=0.0.0.0:8080 REPLBOX_DATA_DIR=/var/lib/replbox/data
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/replbox"]
