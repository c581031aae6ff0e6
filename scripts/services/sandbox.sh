#!/usr/bin/env bash
# Make bubblewrap (`bwrap`) available: the local-process runner runs every job in
# a bwrap sandbox unless its queue says `isolation: none`, and the job-isolation
# tests (tests/security/test_job_isolation.py) need a working one. Debian's
# bubblewrap package; then a smoke test that the kernel lets it make a PID
# namespace here (user namespaces off, or a seccomp profile that forbids
# unshare, would make every sandboxed job fail). Idempotent.
set -euo pipefail
if ! command -v bwrap >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq bubblewrap >/dev/null
  echo "[sandbox.sh] installed Debian's bubblewrap"
fi
if ! bwrap --ro-bind / / --proc /proc --dev /dev --unshare-pid --die-with-parent true; then
  echo "[sandbox.sh] bwrap cannot make a PID namespace on this host (user namespaces" \
       "disabled, or a container without CAP_SYS_ADMIN / unshare allowed)" >&2
  exit 1
fi
echo "[sandbox.sh] bwrap works: $(bwrap --version)"
