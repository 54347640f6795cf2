#!/usr/bin/env bash
# Container images for the local cluster, built with no registry and no network inside builds.
#
#   images.sh base            Debian base with python3 and nodejs (debootstrap; cached by inputs)
#   images.sh pause           the Kubernetes pause container, compiled from k8s.io/kubernetes
#   images.sh project         sidecar and example-handler images from the repo's Dockerfiles
#   images.sh all             the three above
#   images.sh import SOCKET   import every current image into containerd's k8s.io namespace
#
# Images live in a buildah store and as OCI archives under $CACHE/images; archives/current lists
# "<name> <archive>" for what `import` loads. Builds run `buildah bud --pull=never --network=none`,
# so Python packages come from a wheelhouse built on the host, and the Go example builds from a
# toolchain image made of the host's own Go.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${INTENT_FLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intent-fleet}"
store="$cache/images"
archives="$store/archives"
python="${PYTHON:-$repo/.venv/bin/python}"
mkdir -p "$archives"

# A store of our own: nothing lands in the system's /var/lib/containers.
buildah=(buildah --root "$store/storage" --runroot "$store/run" --storage-driver overlay)
BASE="localhost/intent-fleet/base:$BASE_SUITE"
GO_BUILD="localhost/intent-fleet/go-build:$(go env GOVERSION)"
PAUSE="localhost/intent-fleet/pause:$PAUSE_TAG"
TAG="${IMAGE_TAG:-dev}"

log() { printf '%s images: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

have_image() { "${buildah[@]}" inspect --type image "$1" >/dev/null 2>&1; }

# record NAME: save NAME as an OCI archive and list it for `import`.
record() {
    local name="$1" file
    file="$archives/$(echo "${name#localhost/intent-fleet/}" | tr ':/' '__').tar"
    rm -f "$file.partial"
    "${buildah[@]}" push --quiet "$name" "oci-archive:$file.partial:$name" >/dev/null
    mv -f "$file.partial" "$file"
    grep -v "^$name " "$archives/current" 2>/dev/null >"$archives/current.new" || true
    echo "$name $file" >>"$archives/current.new"
    mv -f "$archives/current.new" "$archives/current"
    printf '%-52s %s (%s)\n' "$name" "$file" "$(du -h "$file" | cut -f1)"
}

# The host's own Debian mirror, read from its apt configuration (one-line or deb822 format).
debian_mirror() {
    local uri
    uri="$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)"
    if [[ -z "$uri" ]]; then
        uri="$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)"
    fi
    [[ -n "$uri" ]] || { echo "images.sh: no Debian mirror in /etc/apt" >&2; exit 1; }
    echo "$uri"
}

build_base() {
    local packages="python3,python3-venv,ca-certificates,nodejs"
    local key stamp
    key="$(printf '%s %s' "$BASE_SUITE" "$packages" | sha256sum | cut -c1-12)"
    stamp="$store/base-$key.done"
    if [[ -f "$stamp" ]] && have_image "$BASE"; then
        log "base $BASE cached"
        return 0
    fi
    local started=$SECONDS rootfs container mount
    rootfs="$(mktemp -d "$store/rootfs.XXXXXX")"
    log "debootstrap $BASE_SUITE ($packages)"
    debootstrap --variant=minbase --include="$packages" "$BASE_SUITE" "$rootfs" \
        "$(debian_mirror)" >"$store/debootstrap.log" 2>&1 ||
        { tail -n 20 "$store/debootstrap.log" >&2; rm -rf "$rootfs"; exit 1; }
    # Package indexes and caches are dead weight in an image that never runs apt.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*.log \
        "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/locale
    container="$("${buildah[@]}" from scratch)"
    mount="$("${buildah[@]}" mount "$container")"
    cp -a "$rootfs/." "$mount/"
    "${buildah[@]}" umount "$container" >/dev/null
    "${buildah[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd /bin/bash "$container"
    "${buildah[@]}" commit --quiet --rm "$container" "$BASE" >/dev/null
    rm -rf "$rootfs"
    touch "$stamp"
    log "base built in $((SECONDS - started)) s"
}

build_go_toolchain() {
    have_image "$GO_BUILD" && return 0
    local container mount goroot
    goroot="$(go env GOROOT)"
    container="$("${buildah[@]}" from --pull=never "$BASE")"
    mount="$("${buildah[@]}" mount "$container")"
    mkdir -p "$mount/usr/local"
    cp -a "$goroot" "$mount/usr/local/go"
    "${buildah[@]}" umount "$container" >/dev/null
    "${buildah[@]}" config --env PATH=/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin \
        --env GOTOOLCHAIN=local --env GOFLAGS=-mod=mod --env GOPROXY=off "$container"
    "${buildah[@]}" commit --quiet --rm "$container" "$GO_BUILD" >/dev/null
    log "go toolchain image $GO_BUILD"
}

build_pause() {
    if have_image "$PAUSE" && grep -q "^$PAUSE " "$archives/current" 2>/dev/null; then
        log "pause $PAUSE cached"
        return 0
    fi
    local source work container
    source="$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBERNETES_VERSION/build/pause/linux/pause.c"
    if [[ ! -f "$source" ]]; then
        (cd "$here/modules/kubernetes" && go mod download k8s.io/kubernetes)
    fi
    work="$(mktemp -d)"
    gcc -Os -static -Wall -Werror -DVERSION="$PAUSE_TAG-intent-fleet" -o "$work/pause" "$source"
    strip "$work/pause"
    container="$("${buildah[@]}" from scratch)"
    "${buildah[@]}" copy --quiet "$container" "$work/pause" /pause >/dev/null
    "${buildah[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$container"
    "${buildah[@]}" commit --quiet --rm "$container" "$PAUSE" >/dev/null
    rm -rf "$work"
    record "$PAUSE"
}

# bud NAME DOCKERFILE CONTEXT [BUILD-ARG...]
bud() {
    local name="$1" dockerfile="$2" context="$3" started=$SECONDS
    shift 3
    local args=()
    for arg in "$@"; do args+=(--build-arg "$arg"); done
    "${buildah[@]}" bud --quiet --pull=never --network=none --isolation=oci --layers \
        "${args[@]}" --build-arg "BASE_IMAGE=$BASE" -f "$dockerfile" -t "$name" "$context" \
        >/dev/null
    log "$name built in $((SECONDS - started)) s"
    record "$name"
}

build_project() {
    have_image "$BASE" || build_base
    build_go_toolchain
    local context
    context="$(mktemp -d)"
    trap 'rm -rf "$context"' RETURN
    # The wheelhouse: the project and its runtime dependencies, for `pip install --no-index`.
    "$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$context/wheels" "$repo"
    bud "localhost/intent-fleet/sidecar:$TAG" "$repo/sidecar/Dockerfile" "$context"
    local lang
    for lang in python node go; do
        bud "localhost/intent-fleet/handler-$lang:$TAG" "$repo/examples/handlers/$lang/Dockerfile" \
            "$repo/examples/handlers/$lang" "BUILD_IMAGE=$GO_BUILD"
    done
}

import_all() {
    local socket="$1" name file
    [[ -S "$socket" ]] || { echo "images.sh: no containerd socket at $socket" >&2; exit 1; }
    [[ -f "$archives/current" ]] || { echo "images.sh: nothing built; run images.sh all" >&2; exit 1; }
    while read -r name file; do
        ctr --address "$socket" -n k8s.io images import --no-unpack=false \
            --index-name "$name" "$file" >/dev/null
        log "imported $name"
    done <"$archives/current"
}

started=$SECONDS
case "${1:-}" in
    base) build_base ;;
    pause) build_pause ;;
    project) build_project ;;
    all) build_base; build_pause; build_project ;;
    import) import_all "${2:?usage: images.sh import CONTAINERD_SOCKET}" ;;
    *) echo "usage: images.sh base|pause|project|all|import SOCKET" >&2; exit 2 ;;
esac
log "done in $((SECONDS - started)) s"
