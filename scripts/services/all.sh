#!/usr/bin/env bash
# Start every external service the tests need; .ci/run sources this file.
# Sourced: exports the variables below into the caller. Executed: prints them
# as `export` lines, e.g. `eval "$(scripts/services/all.sh)"`.
#   DOCKER_HOST                    unix:///var/run/docker.sock
#   LAUNCHPLANE_TEST_BASE_IMAGE    launchplane/python-base:bookworm
#   LAUNCHPLANE_TEST_REGISTRY      127.0.0.1:5000 (plain HTTP, no auth)
#   LAUNCHPLANE_TEST_DATABASE_URL  postgresql+asyncpg://postgres@127.0.0.1:54329/launchplane_test
set -euo pipefail
_lp_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

bash "$_lp_dir/docker.sh" >&2
bash "$_lp_dir/kubectl.sh" >&2
bash "$_lp_dir/sandbox.sh" >&2
LAUNCHPLANE_TEST_DATABASE_URL=$(bash "$_lp_dir/postgres.sh")
export LAUNCHPLANE_TEST_DATABASE_URL
export DOCKER_HOST=unix:///var/run/docker.sock
export LAUNCHPLANE_TEST_BASE_IMAGE=launchplane/python-base:bookworm
export LAUNCHPLANE_TEST_REGISTRY=${LAUNCHPLANE_REGISTRY:-127.0.0.1:5000}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then   # executed, not sourced
  for v in DOCKER_HOST LAUNCHPLANE_TEST_BASE_IMAGE LAUNCHPLANE_TEST_REGISTRY LAUNCHPLANE_TEST_DATABASE_URL; do
    echo "export $v=${!v}"
  done
else
  echo "[all.sh] services up: $LAUNCHPLANE_TEST_DATABASE_URL, registry $LAUNCHPLANE_TEST_REGISTRY" >&2
fi
unset _lp_dir
