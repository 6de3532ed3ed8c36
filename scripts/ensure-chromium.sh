#!/usr/bin/env bash
# Debian's Chromium for the browser tests; playwright-core drives it.
set -euo pipefail
if command -v chromium >/dev/null; then echo "==> browser: $(chromium --version 2>/dev/null | head -1)"; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "chromium is missing: install Debian's chromium package" >&2; exit 1; fi
echo "==> browser: installing chromium (apt)"
apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
echo "==> browser: $(chromium --version 2>/dev/null | head -1)"
