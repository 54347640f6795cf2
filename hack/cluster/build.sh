#!/usr/bin/env bash
# Builds the cluster's binaries from the Go module proxy into the cache, only those missing:
#   $CACHE/k8s-<version>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,
#                             kube-proxy,kubectl}
#   $CACHE/etcd-<version>/bin/etcd
#   $CACHE/helm-<version>/bin/helm
#   $CACHE/coredns-<version>/bin/coredns, $CACHE/local-path-<version>/bin/local-path-provisioner
#   $CACHE/prometheus-operator-<version>/crds/servicemonitors.yaml (a CRD the tests apply)
# The directory names carry the versions from versions.env, so a bump builds afresh and an
# unchanged pin costs nothing. Each binary is linked to a temporary name and renamed into place,
# so an interrupted build never leaves a binary that looks finished.
#
# Usage: hack/cluster/build.sh [kubernetes|etcd|helm|addons|crds]...   (default: all five)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${INTENT_FLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intent-fleet}"

# The local toolchain is new enough for all three; never let a go.mod download another.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf '%s build: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# build_into DIR NAME PKG LDFLAGS: link PKG (from the current module) to DIR/NAME.
build_into() {
    local dir="$1" name="$2" pkg="$3" ldflags="$4"
    if [[ -x "$dir/$name" ]]; then
        return 0
    fi
    mkdir -p "$dir"
    log "compiling $name"
    local started=$SECONDS
    go build -trimpath -ldflags "-s -w $ldflags" -o "$dir/.$name.partial" "$pkg"
    mv -f "$dir/.$name.partial" "$dir/$name"
    log "$name ready in $((SECONDS - started)) s"
}

build_kubernetes() {
    local bin="$cache/k8s-$KUBERNETES_VERSION/bin" v="$KUBERNETES_VERSION" pkg ldflags=""
    local minor="${v#v1.}"
    minor="${minor%%.*}"
    # What hack/lib/version.sh sets for a release built from a source archive.
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=archive -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    cd "$here/modules/kubernetes"
    for cmd in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
        build_into "$bin" "$cmd" "k8s.io/kubernetes/cmd/$cmd" "$ldflags"
    done
}

build_etcd() {
    cd "$here/modules/etcd"
    build_into "$cache/etcd-$ETCD_VERSION/bin" etcd go.etcd.io/etcd/server/v3 \
        "-X go.etcd.io/etcd/api/v3/version.GitSHA=module-$ETCD_VERSION"
}

build_helm() {
    local bin="$cache/helm-$HELM_VERSION/bin" minor="${KUBERNETES_VERSION#v1.}" ldflags p
    minor="${minor%%.*}"
    [[ -x "$bin/helm" ]] && return 0
    ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=archive"
    # Without these, `helm template` reports Kubernetes v1.20 as .Capabilities.KubeVersion.
    for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
        ldflags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
    done
    mkdir -p "$bin"
    log "compiling helm"
    local started=$SECONDS
    # helm's own go.mod has no replace lines, so it builds straight from its module.
    GOBIN="$bin/.partial" go install -trimpath -ldflags "-s -w $ldflags" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    mv -f "$bin/.partial/helm" "$bin/helm"
    rmdir "$bin/.partial"
    log "helm ready in $((SECONDS - started)) s"
}

# go_install DIR NAME MODULE@VERSION [LDFLAGS]: a module whose go.mod builds as it is.
go_install() {
    local dir="$1" name="$2" module="$3" ldflags="${4:-}"
    [[ -x "$dir/$name" ]] && return 0
    mkdir -p "$dir"
    log "compiling $name"
    local started=$SECONDS
    GOBIN="$dir/.partial" go install -trimpath -ldflags "-s -w $ldflags" "$module"
    mv -f "$dir/.partial/$name" "$dir/$name"
    rmdir "$dir/.partial"
    log "$name ready in $((SECONDS - started)) s"
}

# The node's add-ons: CoreDNS (cluster DNS) and local-path-provisioner (the default StorageClass).
build_addons() {
    go_install "$cache/coredns-$COREDNS_VERSION/bin" coredns \
        "github.com/coredns/coredns@$COREDNS_VERSION" \
        "-X github.com/coredns/coredns/coremain.GitCommit=module-$COREDNS_VERSION"
    go_install "$cache/local-path-$LOCAL_PATH_VERSION/bin" local-path-provisioner \
        "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION" \
        "-X main.VERSION=$LOCAL_PATH_VERSION"
}

# Third-party CRDs the chart can use, from their Go modules (the module zip carries them).
fetch_crds() {
    local dir="$cache/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION/crds" module_dir
    [[ -s "$dir/servicemonitors.yaml" ]] && return 0
    module_dir="$(go mod download -json \
        "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -n "$module_dir" ]] || { log "no module directory for prometheus-operator"; exit 1; }
    mkdir -p "$dir"
    install -m 0644 \
        "$module_dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
        "$dir/.servicemonitors.yaml.partial"
    mv -f "$dir/.servicemonitors.yaml.partial" "$dir/servicemonitors.yaml"
    log "ServiceMonitor CRD $PROMETHEUS_OPERATOR_VERSION ready"
}

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then targets=(etcd kubernetes helm addons crds); fi
started=$SECONDS
for target in "${targets[@]}"; do
    case "$target" in
        kubernetes) (build_kubernetes) ;;
        etcd) (build_etcd) ;;
        helm) (build_helm) ;;
        addons) (build_addons) ;;
        crds) (fetch_crds) ;;
        *) echo "build.sh: unknown target '$target' (kubernetes, etcd, helm, addons, crds)" >&2; exit 2 ;;
    esac
done
log "all binaries present after $((SECONDS - started)) s"
