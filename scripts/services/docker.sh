#!/usr/bin/env bash
# Install and start a Docker engine, a local registry on 127.0.0.1:5000 and the
# base image launchplane/python-base:bookworm, for launchplane's tests.
# Idempotent: every step is skipped when its result is already there.
#
# Env overrides:
#   LAUNCHPLANE_CACHE          cache dir for the rootfs tarball (/var/cache/launchplane)
#   LAUNCHPLANE_DEBIAN_MIRROR  mirror for debootstrap (default: the one apt uses)
#   LAUNCHPLANE_BASE_INCLUDE   packages for the image (python3-minimal,python3-venv)
#   LAUNCHPLANE_REGISTRY       registry address (127.0.0.1:5000)
#   DOCKERD_STORAGE_DRIVER     first storage driver to try (overlay2; vfs is the fallback)
#   DOCKERD_EXTRA_FLAGS        extra dockerd flags
#   LAUNCHPLANE_SKIP_CHECKS=1  skip the run/OOM/build/registry smoke checks
set -euo pipefail

CACHE=${LAUNCHPLANE_CACHE:-/var/cache/launchplane}
IMAGE=launchplane/python-base:bookworm
INCLUDE=${LAUNCHPLANE_BASE_INCLUDE:-python3-minimal,python3-venv}
REGISTRY=${LAUNCHPLANE_REGISTRY:-127.0.0.1:5000}
DOCKERD_LOG=/tmp/launchplane-dockerd.log
REG_DIR=/tmp/launchplane-registry
REG_LOG=/tmp/launchplane-registry.log
export DEBIAN_FRONTEND=noninteractive
# Use Debian's client, matching the engine (a newer /usr/local/bin/docker may shadow it).
docker() { /usr/bin/docker "$@"; }

T0=$(date +%s.%N); T=$T0
log()  { echo "[docker.sh] $*"; }
die()  { echo "[docker.sh] ERROR: $*" >&2; exit 1; }
step() { local n; n=$(date +%s.%N); awk -v a="$T" -v b="$n" -v s="$1" 'BEGIN{printf "[docker.sh] %-30s %6.1fs\n", "done: " s, b-a}'; T=$n; }

# 1. Packages (apt-get update only when something is missing).
need=()
for p in docker.io docker-registry debootstrap curl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq "${need[@]}" >/tmp/launchplane-apt-docker.log 2>&1 \
    || { tail -20 /tmp/launchplane-apt-docker.log >&2; die "apt-get install ${need[*]} failed"; }
fi
step "packages"

# 2. Engine: start dockerd (no systemd here) unless one already answers.
#    --iptables=false: no NAT, so containers on the bridge reach only this host;
#    --ip-forward=false: dockerd leaves forwarding off, so un-NATed container
#    packets never leave the machine. Storage: overlay2 (about 0.4 s per
#    `docker run` here), falling back to vfs (about 4 s: it copies the image).
start_dockerd() {  # $1 = storage driver
  log "starting dockerd (storage $1), log: $DOCKERD_LOG"
  # setsid: own session, so it outlives the calling shell and its process group.
  # shellcheck disable=SC2086
  setsid nohup dockerd --iptables=false --ip-forward=false --storage-driver="$1" \
    ${DOCKERD_EXTRA_FLAGS:-} >>"$DOCKERD_LOG" 2>&1 </dev/null &
  local pid=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break   # dockerd exited: stop waiting
    sleep 0.5
  done
  grep -vF '[core]' "$DOCKERD_LOG" | tail -15 >&2; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  return 1
}
if ! docker info >/dev/null 2>&1; then
  # A pid file left by a killed dockerd blocks a new one if its pid was reused.
  pid=$(cat /var/run/docker.pid 2>/dev/null || true)
  [ -n "$pid" ] && [ "$(ps -o comm= -p "$pid" || true)" != dockerd ] && rm -f /var/run/docker.pid
  start_dockerd "${DOCKERD_STORAGE_DRIVER:-overlay2}" || start_dockerd vfs \
    || die "dockerd did not start with overlay2 nor vfs (log tail above, full log $DOCKERD_LOG)"
fi
step "dockerd up"

# 3. Base image: debootstrap (cached as a tarball) + docker import.
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  tarball="$CACHE/python-base-bookworm-${INCLUDE//,/_}.tar"
  if [ ! -s "$tarball" ]; then
    # Same mirror apt uses: first URI serving plain "bookworm" (deb822 or one-line format).
    mirror=${LAUNCHPLANE_DEBIAN_MIRROR:-$(
      { awk '/^URIs:/{u=$2} /^Suites:/{for(i=2;i<=NF;i++) if($i=="bookworm") print u} /^$/{u=""}' \
          /etc/apt/sources.list.d/*.sources 2>/dev/null || true
        awk '$1=="deb"{sub(/\[[^]]*\] */,""); if($3=="bookworm") print $2}' \
          /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } | head -1)}
    [ -n "$mirror" ] || die "no bookworm mirror found in apt sources; set LAUNCHPLANE_DEBIAN_MIRROR"
    log "debootstrap bookworm (include: $INCLUDE) from $mirror"
    root=$(mktemp -d /tmp/launchplane-rootfs.XXXXXX)
    debootstrap --variant=minbase --include="$INCLUDE" bookworm "$root" "$mirror" \
      >/tmp/launchplane-debootstrap.log 2>&1 \
      || { tail -20 /tmp/launchplane-debootstrap.log >&2; die "debootstrap failed"; }
    # Drop what a runtime image does not need (apt caches, docs); vfs copies the
    # whole rootfs for every container, so size is start-up time.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
           "$root"/usr/share/{doc,man,info,locale}/*
    mkdir -p "$CACHE"
    tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
    step "debootstrap + tarball"
  fi
  log "importing $tarball as $IMAGE"
  docker import -c 'CMD ["python3"]' "$tarball" "$IMAGE" >/dev/null
fi
step "base image"

# 4. Registry (Debian's docker-registry = distribution v2) on loopback, no auth,
#    no proxy/remote section, so it never contacts anything outside.
if ! curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1; then
  mkdir -p "$REG_DIR/data"
  cat >"$REG_DIR/config.yml" <<EOF
version: 0.1
log: {level: info}
storage:
  filesystem: {rootdirectory: $REG_DIR/data}
  delete: {enabled: true}
http: {addr: $REGISTRY}
EOF
  log "starting docker-registry on $REGISTRY, log: $REG_LOG"
  setsid nohup /usr/bin/docker-registry serve "$REG_DIR/config.yml" >"$REG_LOG" 2>&1 </dev/null &
  for _ in $(seq 40); do curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && break; sleep 0.25; done
  curl -fsS "http://$REGISTRY/v2/" >/dev/null || { tail -20 "$REG_LOG" >&2; die "registry did not answer on $REGISTRY"; }
fi
step "registry up"

# 5. Smoke checks: run, build, registry round trip (loopback registries are
#    insecure by default in dockerd, so no daemon.json is needed).
if [ "${LAUNCHPLANE_SKIP_CHECKS:-0}" != 1 ]; then
  [ "$(docker run --rm --network none "$IMAGE" python3 -c 'print(1)')" = 1 ] || die "docker run failed"
  step "check: docker run"
  # A memory limit must kill a container that outgrows it (tests rely on OOMKilled).
  docker rm -f launchplane-oomcheck >/dev/null 2>&1 || true
  docker run --name launchplane-oomcheck --memory 32m --network none "$IMAGE" \
    python3 -c 'b = bytearray(200 * 1024 * 1024)' >/dev/null 2>&1 || true
  oom=$(docker inspect -f '{{.State.OOMKilled}} {{.State.ExitCode}}' launchplane-oomcheck)
  docker rm launchplane-oomcheck >/dev/null
  [ "$oom" = "true 137" ] || die "--memory 32m did not OOM-kill a 200MB python (OOMKilled/exit: $oom)"
  step "check: OOMKilled under --memory"
  ctx=$(mktemp -d); printf 'FROM %s\nRUN python3 -c "import json, venv"\n' "$IMAGE" >"$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t launchplane/smoke:latest "$ctx" >/dev/null || die "docker build failed"
  rm -rf "$ctx"; docker rmi launchplane/smoke:latest >/dev/null
  step "check: docker build"
  docker tag "$IMAGE" "$REGISTRY/$IMAGE"
  docker push -q "$REGISTRY/$IMAGE" >/dev/null || die "push to $REGISTRY failed"
  docker rmi "$REGISTRY/$IMAGE" >/dev/null
  docker pull -q "$REGISTRY/$IMAGE" >/dev/null || die "pull from $REGISTRY failed"
  curl -fsS "http://$REGISTRY/v2/${IMAGE%%:*}/tags/list" | grep -q bookworm || die "image not listed in registry"
  step "check: registry push/pull"
fi

log "OK: DOCKER_HOST=unix:///var/run/docker.sock image=$IMAGE registry=$REGISTRY total $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"
