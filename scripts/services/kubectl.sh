#!/usr/bin/env bash
# Make `kubectl kustomize` available for the deploy/kubernetes tests: Debian's
# kubernetes-client when no kubectl is installed. No cluster is started (none
# can run here); the tests only render manifests with it. Idempotent.
set -euo pipefail
if command -v kubectl >/dev/null 2>&1; then
  echo "[kubectl.sh] kubectl present: $(kubectl version --client 2>/dev/null | head -1)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq kubernetes-client >/dev/null
echo "[kubectl.sh] installed Debian's kubernetes-client: $(kubectl version --client 2>/dev/null | head -1)"
