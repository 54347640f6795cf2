#!/usr/bin/env bash
# Container images for the local test cluster, made with no image registry and no Docker engine.
#
#   images.sh base            Debian base (debootstrap: python3, python3-venv, nodejs) and a Go
#                             build image holding the host's Go toolchain; both cached by inputs
#   images.sh pause           the Kubernetes pause container, compiled from k8s.io/kubernetes
#   images.sh project         the sidecar, the operator and the example handlers (python, node, go), rebuilt
#                             from the repo on every call
#   images.sh addons          CoreDNS and local-path-provisioner, from the binaries build.sh
#                             made; the base also named as the local-path helper image
#   images.sh all             base, pause, addons and project
#   images.sh import SOCKET   import every image built into containerd's k8s.io namespace
#
# Images are built with buildah in a store of our own under $CACHE/images (nothing lands in the
# system's /var/lib/containers), and saved as OCI archives in $CACHE/images/archives, where
# `current` lists "<name> <archive> [<alias>...]" for `import`. Nothing is ever pulled: every
# build runs `buildah bud --pull=never --network=none`, the sidecar installs from a wheelhouse
# built on the host, and the Go handler compiles with the toolchain image.
#
# Environment:
#   INTENT_FLEET_CACHE  the cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/intent-fleet)
#   DEBIAN_MIRROR       the mirror for debootstrap (default: the host's apt sources for $BASE_SUITE)
#   PYTHON              the Python that builds the wheelhouse (default: the repo's .venv)
#   IMAGE_TAG           the tag of the project images (default: the version in pyproject.toml,
#                       which is also the chart's appVersion)
#   BUILDAH_ISOLATION   isolation for RUN steps (default oci, i.e. runc: chroot cannot do --network=none)
#
# Needs root, buildah, debootstrap, gcc, go, and for `import`, ctr (all from Debian bookworm).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$here/versions.env"
cache="${INTENT_FLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intent-fleet}"
store="$cache/images"
archives="$store/archives"
python="${PYTHON:-$repo/.venv/bin/python}"
# The project's version (pyproject.toml), which the chart's appVersion names too.
tag="${IMAGE_TAG:-$(sed -n '/^version = /{s/^version = "\(.*\)"$/\1/p;q}' "$repo/pyproject.toml")}"
[[ -n "$tag" ]] || { echo "images.sh: no version in $repo/pyproject.toml" >&2; exit 1; }
isolation="${BUILDAH_ISOLATION:-oci}"

buildah=(buildah --root "$store/storage" --runroot "$store/run" --storage-driver overlay)

# What the base is made of; changing a line here (or the suite) makes a new base.
base_packages="python3,python3-venv,ca-certificates,nodejs"
base_recipe="1 $BASE_SUITE $base_packages $(dpkg --print-architecture)"
base_key="$(printf '%s' "$base_recipe" | sha256sum | cut -c1-12)"
BASE="localhost/intent-fleet/base:$BASE_SUITE-$base_key"
GO_BUILD="localhost/intent-fleet/go-build:$(go env GOVERSION)"
PAUSE="localhost/intent-fleet/pause:$PAUSE_TAG"

log() { printf '%s images: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'images.sh: %s\n' "$*" >&2; exit 1; }

# The working container and temporary directories, removed however the script ends.
container=""
scratch=()
cleanup() {
    local dir
    if [[ -n "$container" ]]; then "${buildah[@]}" rm "$container" >/dev/null 2>&1 || true; fi
    for dir in "${scratch[@]}"; do
        # A debootstrap that failed half-way may leave /proc or /sys mounted in its target.
        findmnt -rn -o TARGET | grep -F "$dir/" | sort -r | xargs -r umount -l || true
        rm -rf "$dir"
    done
}
trap cleanup EXIT

# new_container FROM: a working container, its id in $container until `commit`.
new_container() { container="$("${buildah[@]}" from --pull=never --quiet "$1")"; }

# commit NAME [LABEL=VALUE...]: commit $container as NAME and remove the working container.
commit() {
    local name="$1" label
    shift
    for label in "$@"; do "${buildah[@]}" config --label "$label" "$container"; done
    "${buildah[@]}" commit --quiet --rm "$container" "$name" >/dev/null
    container=""
}

new_dir() {
    local dir
    dir="$(mktemp -d "$store/tmp.XXXXXX")"
    scratch+=("$dir")
    echo "$dir"
}

have_image() { "${buildah[@]}" inspect --type image "$1" >/dev/null 2>&1; }

label_of() {
    "${buildah[@]}" inspect --type image --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null ||
        true
}

archive_of() { echo "$archives/$(printf '%s' "${1#localhost/intent-fleet/}" | tr ':/' '__').tar"; }

# record NAME [ALIAS...]: save NAME as an OCI archive and list it (and its aliases) for `import`.
# An archive whose image did not change (cached, or a build served from the layer cache) is kept.
record() {
    local name="$1" file id
    file="$(archive_of "$name")"
    # No `| head`: under pipefail a reader that stops early fails the writer with SIGPIPE.
    id="$("${buildah[@]}" images --noheading --no-trunc --format '{{.ID}}' "$name")"
    id="${id%%$'\n'*}"
    if [[ ! -f "$file" || "$(cat "$file.id" 2>/dev/null)" != "$id" ]]; then
        rm -f "$file.partial" "$file.id"
        "${buildah[@]}" push --quiet "$name" "oci-archive:$file.partial:$name" >/dev/null
        mv -f "$file.partial" "$file"
        echo "$id" >"$file.id"
    fi
    { grep -v "^$name " "$archives/current" 2>/dev/null || true; echo "$name $file${2:+ ${*:2}}"; } \
        >"$archives/current.new"
    mv -f "$archives/current.new" "$archives/current"
    printf '%-44s %s (%s)\n' "$name" "$file" "$(du -h "$file" | cut -f1)"
}

# The host's Debian mirror for $BASE_SUITE, from its apt sources (deb822 or one-line format).
debian_mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
    local uri="" files=()
    shopt -s nullglob
    files=(/etc/apt/sources.list.d/*.sources)
    shopt -u nullglob
    if ((${#files[@]})); then
        uri="$(awk -v suite="$BASE_SUITE" '
            function flush() { if (deb && hit && uri != "" && first == "") first = uri; deb = hit = 0; uri = "" }
            /^[[:space:]]*$/ { flush(); next }
            /^Types:/ { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
            /^Enabled:[[:space:]]*no/ { deb = 0 }
            END { flush(); print first }' "${files[@]}")"
    fi
    if [[ -z "$uri" ]]; then
        shopt -s nullglob
        files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
        shopt -u nullglob
        if ((${#files[@]})); then
            uri="$(sed -E 's/\[[^]]*\]//' "${files[@]}" |
                awk -v suite="$BASE_SUITE" '$1 == "deb" && $3 == suite { print $2; exit }')"
        fi
    fi
    [[ -n "$uri" ]] || die "no apt source for $BASE_SUITE in /etc/apt; set DEBIAN_MIRROR"
    echo "$uri"
}

build_base() {
    local started=$SECONDS rootfs mirror mount
    if have_image "$BASE"; then
        log "base $BASE cached"
    else
        rootfs="$(new_dir)/rootfs"
        mirror="$(debian_mirror)"
        log "debootstrap $BASE_SUITE from $mirror ($base_packages)"
        debootstrap --variant=minbase --include="$base_packages" "$BASE_SUITE" "$rootfs" "$mirror" \
            >"$store/debootstrap.log" 2>&1 ||
            { tail -n 20 "$store/debootstrap.log" >&2; die "debootstrap failed; see $store/debootstrap.log"; }
        # Dead weight in an image that never runs apt, and host files a container runtime provides.
        (
            cd "$rootfs"
            rm -rf var/lib/apt/lists/* var/cache/apt/* var/cache/debconf/*-old var/lib/dpkg/*-old \
                var/log/* usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/* \
                dev/* run/* tmp/* etc/resolv.conf etc/hostname etc/machine-id
        )
        new_container scratch
        mount="$("${buildah[@]}" mount "$container")"
        cp -a "$rootfs/." "$mount/"
        "${buildah[@]}" umount "$container" >/dev/null
        "${buildah[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            --env LANG=C.UTF-8 --cmd /bin/bash "$container"
        commit "$BASE" "io.intent-fleet.recipe=$base_recipe"
        rm -rf "$rootfs"
        log "base $BASE built in $((SECONDS - started)) s"
    fi
    record "$BASE"
    build_go_toolchain
}

# The multi-stage builder: the base plus the host's own Go (no tests, docs or API lists), its
# build cache warmed by compiling the Go example the way its Dockerfile does, so that a Go
# handler build compiles its own code but not the standard library again.
build_go_toolchain() {
    local started=$SECONDS goroot mount
    if [[ "$(label_of "$GO_BUILD" io.intent-fleet.base)" == "$BASE" ]]; then
        log "go build image $GO_BUILD cached"
        return 0
    fi
    goroot="$(go env GOROOT)"
    new_container "$BASE"
    mount="$("${buildah[@]}" mount "$container")"
    mkdir -p "$mount/usr/local/go"
    tar -C "$goroot" --exclude=./test --exclude=./doc --exclude=./api --exclude=./misc -cf - . |
        tar -C "$mount/usr/local/go" -xf -
    "${buildah[@]}" umount "$container" >/dev/null
    "${buildah[@]}" config --env PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env GOTOOLCHAIN=local --env GOPROXY=off "$container"
    "${buildah[@]}" copy --quiet "$container" "$repo/examples/handlers/go" /tmp/warm >/dev/null
    "${buildah[@]}" run --isolation="$isolation" --network=none "$container" -- sh -c \
        'cd /tmp/warm && CGO_ENABLED=0 go build -trimpath -o /dev/null . && rm -rf /tmp/warm'
    commit "$GO_BUILD" "io.intent-fleet.base=$BASE"
    log "go build image $GO_BUILD built in $((SECONDS - started)) s"
}

# The name Debian's containerd uses for its sandbox image, from its built-in default config.
default_sandbox_image() {
    local config
    config="$(containerd config default 2>/dev/null)"
    # Read from a variable, not a pipe: an early-exiting reader would SIGPIPE containerd.
    awk -F'"' '/^[[:space:]]*sandbox_image[[:space:]]*=/ { print $2; exit }' <<<"$config"
}

build_pause() {
    local started=$SECONDS source work default alias=()
    default="$(default_sandbox_image)"
    if [[ -n "$default" ]]; then
        [[ "${default##*:}" == "$PAUSE_TAG" ]] ||
            log "warning: containerd's default sandbox image is $default, not tag $PAUSE_TAG"
        alias=("$default")
    else
        log "warning: no sandbox_image in \`containerd config default\`; only $PAUSE is named"
    fi
    if [[ "$(label_of "$PAUSE" io.intent-fleet.kubernetes)" == "$KUBERNETES_VERSION" ]]; then
        log "pause $PAUSE cached"
        record "$PAUSE" "${alias[@]}"
        return 0
    fi
    source="$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBERNETES_VERSION/build/pause/linux/pause.c"
    if [[ ! -f "$source" ]]; then
        log "go mod download k8s.io/kubernetes@$KUBERNETES_VERSION"
        (cd / && GOFLAGS=-mod=mod go mod download "k8s.io/kubernetes@$KUBERNETES_VERSION")
    fi
    work="$(new_dir)"
    gcc -Os -static -Wall -Werror -DVERSION="v$PAUSE_TAG-intent-fleet" -o "$work/pause" "$source"
    strip "$work/pause"
    new_container scratch
    "${buildah[@]}" copy --quiet "$container" "$work/pause" /pause >/dev/null
    "${buildah[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$container"
    commit "$PAUSE" "io.intent-fleet.kubernetes=$KUBERNETES_VERSION"
    if ((${#alias[@]})); then "${buildah[@]}" tag "$PAUSE" "${alias[@]}"; fi
    log "pause built in $((SECONDS - started)) s"
    record "$PAUSE" "${alias[@]}"
}

# static_image NAME BINARY VERSION: an image of one static binary (no shell), run as 65532.
static_image() {
    local name="$1" binary="$2" version="$3"
    [[ -x "$binary" ]] || die "$binary is missing; run hack/cluster/build.sh addons"
    if [[ "$(label_of "$name" io.intent-fleet.version)" != "$version" ]]; then
        new_container scratch
        "${buildah[@]}" copy --quiet "$container" "$binary" "/$(basename "$binary")" >/dev/null
        "${buildah[@]}" config --entrypoint "[\"/$(basename "$binary")\"]" --user 65532:65532 \
            "$container"
        commit "$name" "io.intent-fleet.version=$version"
        log "$name built"
    fi
    record "$name"
}

build_addons() {
    if ! have_image "$BASE"; then build_base; fi
    static_image "localhost/intent-fleet/coredns:$COREDNS_VERSION" \
        "$cache/coredns-$COREDNS_VERSION/bin/coredns" "$COREDNS_VERSION"
    static_image "localhost/intent-fleet/local-path-provisioner:$LOCAL_PATH_VERSION" \
        "$cache/local-path-$LOCAL_PATH_VERSION/bin/local-path-provisioner" "$LOCAL_PATH_VERSION"
    # The helper pods that make and remove volume directories need a shell: the base has one.
    record "$BASE" "localhost/intent-fleet/helper:dev"
}

# bud NAME DOCKERFILE CONTEXT [BUILD-ARG...]
bud() {
    local name="$1" dockerfile="$2" context="$3" started=$SECONDS arg args=()
    shift 3
    for arg in "BASE_IMAGE=$BASE" "$@"; do args+=(--build-arg "$arg"); done
    "${buildah[@]}" bud --quiet --pull=never --network=none --isolation="$isolation" --layers \
        "${args[@]}" -f "$dockerfile" -t "$name" "$context" >"$store/bud.log" 2>&1 ||
        { tail -n 30 "$store/bud.log" >&2; die "building $name failed; see $store/bud.log"; }
    log "$name built in $((SECONDS - started)) s"
    record "$name"
}

build_project() {
    local started=$SECONDS context lang
    # Another version's project images (an older checkout's) are no longer imported.
    { grep -Ev "^localhost/intent-fleet/(sidecar|operator|handler-[a-z]+):" "$archives/current" \
        2>/dev/null || true; } >"$archives/current.new"
    mv -f "$archives/current.new" "$archives/current"
    if ! have_image "$BASE" || ! have_image "$GO_BUILD"; then build_base; fi
    # The wheelhouse: the project and its runtime dependencies, for `pip install --no-index`.
    # Built from a copy of the sources (no stale build/ of the checkout, nothing written into
    # it) with fixed timestamps, so unchanged sources give the same bytes and the same layers.
    context="$(new_dir)"
    mkdir "$context/source"
    tar -C "$repo" --exclude='*.egg-info' --exclude=__pycache__ -cf - pyproject.toml README.md src |
        tar -C "$context/source" -xf -
    SOURCE_DATE_EPOCH=315532800 "$python" -m pip wheel --quiet --disable-pip-version-check \
        --wheel-dir "$context/wheels" "$context/source[operator,postgres]"
    touch -d @315532800 "$context/wheels" "$context"/wheels/*
    cp "$repo/sidecar/Dockerfile" "$context/Dockerfile"
    cp "$repo/operator/Dockerfile" "$context/Dockerfile.operator"
    rm -rf "$context/source"
    log "wheelhouse in $((SECONDS - started)) s"
    bud "localhost/intent-fleet/sidecar:$tag" "$context/Dockerfile" "$context"
    bud "localhost/intent-fleet/operator:$tag" "$context/Dockerfile.operator" "$context"
    for lang in python node; do
        bud "localhost/intent-fleet/handler-$lang:$tag" "$repo/examples/handlers/$lang/Dockerfile" \
            "$repo/examples/handlers/$lang"
    done
    bud "localhost/intent-fleet/handler-go:$tag" "$repo/examples/handlers/go/Dockerfile" \
        "$repo/examples/handlers/go" "BUILD_IMAGE=$GO_BUILD"
    log "project images in $((SECONDS - started)) s"
}

import_all() {
    local socket="$1" name file rest aliases have wanted=()
    [[ -S "$socket" ]] || die "no containerd socket at $socket"
    [[ -s "$archives/current" ]] || die "nothing built in $archives; run images.sh all"
    local ctr=(ctr --address "$socket" --namespace k8s.io)
    while read -r name file rest; do
        read -ra aliases <<<"$rest"
        # buildah names the image in the archive's index.json (org.opencontainers.image.ref.name),
        # and ctr imports it under that full name; --index-name would add a second record of
        # the same name for the index, which ctr then fails to unpack.
        "${ctr[@]}" images import "$file" >/dev/null
        if ((${#aliases[@]})); then "${ctr[@]}" images tag --force "$name" "${aliases[@]}" >/dev/null; fi
        wanted+=("$name" "${aliases[@]}")
        log "imported $name${rest:+ (also $rest)}"
    done <"$archives/current"
    have="$("${ctr[@]}" images ls -q)"
    for name in "${wanted[@]}"; do
        grep -qxF "$name" <<<"$have" || die "$name is not in containerd after the import"
    done
}

started=$SECONDS
case "${1:-}" in
    base | pause | addons | project | all)
        mkdir -p "$archives"
        # One build at a time per cache.
        exec 9>"$store/.lock"
        flock 9
        ;;
esac
case "${1:-}" in
    base) build_base ;;
    pause) build_pause ;;
    addons) build_addons ;;
    project) build_project ;;
    all) build_base; build_pause; build_addons; build_project ;;
    import) import_all "${2:?usage: images.sh import CONTAINERD_SOCKET}" ;;
    *) echo "usage: images.sh base|pause|addons|project|all|import CONTAINERD_SOCKET" >&2; exit 2 ;;
esac
log "${1} done in $((SECONDS - started)) s"
