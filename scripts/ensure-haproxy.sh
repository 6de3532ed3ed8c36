#!/usr/bin/env bash
# Debian's HAProxy, the load balancer in front of two replicas in
# tests/replicas.rs (the test starts its own instance on a free port; the
# package's service is not used).
set -euo pipefail
if command -v haproxy >/dev/null; then echo "==> haproxy: $(haproxy -v 2>/dev/null | head -1)"; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "haproxy is missing: install Debian's haproxy package" >&2; exit 1; fi
echo "==> haproxy: installing (apt)"
apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null 2>&1
# Only the binary is wanted: the package's own service (on its default
# config) is stopped if it started.
if command -v systemctl >/dev/null && systemctl is-active --quiet haproxy 2>/dev/null; then
  systemctl stop haproxy || true
fi
echo "==> haproxy: $(haproxy -v 2>/dev/null | head -1)"
