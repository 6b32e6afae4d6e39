#!/usr/bin/env bash
# Build real Kubernetes server binaries offline, from the Kubernetes source Debian ships
# (`apt-get source kubernetes`), with Debian's Go toolchain; cache them by version.
#
#   scripts/build-kubernetes.sh [VERSION]        (default v1.20.2, the only one Debian 12 has)
#
# Prints progress on stderr and the cached bin directory as the LAST line of stdout:
#   /var/cache/slipway/kubernetes/<version>/bin
# A warm run (the cache has a .complete marker) only prints that path. Everything is
# reachable without the internet: Debian's archive is the one registry this project has,
# and its kubernetes source package carries the whole vendor/ tree.
#
# Why this shape (see docs/kubernetes-build.md):
# - GOPATH mode (GO111MODULE=off) with the tree at $GOPATH/src/k8s.io/kubernetes: the
#   vendor/ directory is used as is and nothing is downloaded (GOPROXY=off makes sure).
# - Debian's orig tarball lacks pkg/generated/openapi/zz_generated.openapi.go (upstream
#   generates it at build time), so we build the vendored openapi-gen and run it on the
#   same package set upstream's Makefile.generated_files selects; its API-rule report must
#   equal upstream's checked-in list, as upstream's make insists.
# - Plain `go build` with the version stamped by -X on component-base/version and
#   client-go/pkg/version, as hack/lib/version.sh does; without it the binaries report
#   v0.0.0. buildDate comes from debian/changelog, so rebuilds are byte-reproducible.
# - Everything (source, GOPATH, GOCACHE, binaries) lives under the cache root, never in the
#   clone, and .complete is written last so a half-built cache is never used.
#
# Environment:
#   SLIPWAY_CACHE   cache root (default /var/cache/slipway)
#   SLIPWAY_K8S_REBUILD=1   ignore a complete cache and rebuild (keeps GOCACHE: fast)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSION=${1:-v1.20.2}
CACHE_ROOT=${SLIPWAY_CACHE:-/var/cache/slipway}/kubernetes
OUT=$CACHE_ROOT/$VERSION
BIN=$OUT/bin
GO=/usr/lib/go-1.19/bin/go
GO_PKG=golang-1.19-go
# The binaries Slipway installs on machines (kubectl too: control-plane machines get it).
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

log() { echo "build-kubernetes: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $VERSION =~ ^v([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] || die "version must look like v1.20.2, got '$VERSION'"
MAJOR=${BASH_REMATCH[1]}
MINOR=${BASH_REMATCH[2]}

complete() { [[ -f $OUT/.complete ]] && for b in "${BINARIES[@]}"; do [[ -x $BIN/$b ]] || return 1; done; }

# Warm path: no lock, no apt, no go. Seconds.
if [[ ${SLIPWAY_K8S_REBUILD:-} != 1 ]] && complete; then
  echo "$BIN"
  exit 0
fi

[[ $(id -u) == 0 ]] || die "run as root (installs Debian packages, writes $CACHE_ROOT)"
mkdir -p "$CACHE_ROOT"
# Two builds at once (two test files, a developer and CI) would extract into the same work
# dir: serialise them; the second one finds the cache complete and returns at once.
exec 9>"$CACHE_ROOT/.lock"
if ! flock -w 1800 9; then die "another build holds $CACHE_ROOT/.lock for 30 minutes; giving up"; fi
if [[ ${SLIPWAY_K8S_REBUILD:-} != 1 ]] && complete; then
  echo "$BIN"
  exit 0
fi

started=$(date +%s)

# --- packages -------------------------------------------------------------------------
# dpkg-dev: apt-get source unpacks with dpkg-source (and dpkg-parsechangelog below);
# xz-utils: the Debian part is a .tar.xz; golang-1.19-go: the oldest Go Debian 12 has
# (1.20 was released with Go 1.15; 1.19 still compiles its vendor tree);
# golang-github-modern-go-reflect2-dev: reflect2 1.0.2, see "vendor fix" below.
REFLECT2_PKG=golang-github-modern-go-reflect2-dev
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
need=()
for p in dpkg-dev xz-utils "$GO_PKG" "$REFLECT2_PKG" util-linux; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done

# apt-get source needs a deb-src entry. Reuse the mirror apt already uses for bookworm's
# binary packages, so CI and developers fetch from the same place.
have_src() { apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes$'; }
updated=0
if ! have_src; then
  mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [[ -n $mirror ]] || mirror=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  [[ -n $mirror ]] || mirror=http://deb.debian.org/debian
  log "adding a deb-src entry for bookworm ($mirror)"
  cat > /etc/apt/sources.list.d/slipway-debian-src.sources <<EOF
# Added by slipway scripts/build-kubernetes.sh: Kubernetes source for offline builds.
Types: deb-src
URIs: $mirror
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt-get update -qq
  updated=1
  have_src || die "apt-cache showsrc kubernetes finds nothing even after adding a deb-src entry"
fi
if ((${#need[@]})); then
  log "installing ${need[*]}"
  ((updated)) || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[[ -x $GO ]] || die "$GO missing after installing $GO_PKG"

# Debian names it 1.20.5+really1.20.2-...: the upstream source is what follows "really".
src_version=$(apt-cache showsrc kubernetes | awk '/^Version:/ { print $2 }' | sort -V | tail -1)
upstream=${src_version%-*}
upstream=${upstream##*really}
upstream=${upstream%%+*}
[[ v$upstream == "$VERSION" ]] || die "Debian's kubernetes source is $src_version (upstream v$upstream); it cannot build $VERSION"

# --- source ---------------------------------------------------------------------------
# A fresh extraction each cold build: a previous run may have died half way through.
# GOCACHE stays, keyed by content, so a re-extracted tree compiles warm.
WORK=$CACHE_ROOT/work/$VERSION
export GOPATH=$WORK/gopath
TREE=$GOPATH/src/k8s.io/kubernetes
rm -rf "$WORK" "$OUT"
mkdir -p "$WORK/dl" "$GOPATH/src/k8s.io" "$WORK/tmp"
log "fetching kubernetes $src_version source with apt-get source"
# apt's sandbox user cannot write to a root-owned dir; the download is verified by the
# signed Release file either way, so let it run as root quietly.
(cd "$WORK/dl" && apt-get source -qq -o APT::Sandbox::User=root "kubernetes=$src_version" >/dev/null)
srcdir=$(find "$WORK/dl" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
[[ -n $srcdir && -d $srcdir/vendor ]] || die "apt-get source produced no tree with vendor/ in $WORK/dl"
mv "$srcdir" "$TREE"
rm -rf "$WORK/dl"

# --- version stamp ----------------------------------------------------------------------
# The same ldflags hack/lib/version.sh gives a `git archive` export of the tag: its commit
# (filled in by git archive), tree state "archive", and buildDate = the Debian upload date.
commit=$(sed -n "s/^ *KUBE_GIT_COMMIT='\([0-9a-f]\{40\}\)'.*/\1/p" "$TREE/hack/lib/version.sh" | head -1)
[[ -n $commit ]] || die "no archive commit id in hack/lib/version.sh"
grep -q "'tag: $VERSION'" "$TREE/hack/lib/version.sh" || die "hack/lib/version.sh does not name tag $VERSION"
epoch=$(dpkg-parsechangelog -l "$TREE/debian/changelog" -S Timestamp)
build_date=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for kv in "gitVersion=$VERSION" "gitMajor=$MAJOR" "gitMinor=$MINOR" "gitCommit=$commit" \
          "gitTreeState=archive" "buildDate=$build_date"; do
  for pkg in component-base/version client-go/pkg/version; do
    ldflags+=" -X k8s.io/kubernetes/vendor/k8s.io/$pkg.$kv"
  done
done

# --- Go environment ---------------------------------------------------------------------
export GO111MODULE=off GOPROXY=off GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0
export GOCACHE=$CACHE_ROOT/gocache GOTMPDIR=$WORK/tmp
export PATH=/usr/lib/go-1.19/bin:$PATH
cd "$TREE"

# --- vendor fix: reflect2 1.0.1 -> 1.0.2 ----------------------------------------------
# 1.20 vendors github.com/modern-go/reflect2 v1.0.1, which links against the runtime's
# mapiterinit with its pre-Go-1.18 signature: built with Go >= 1.18, json-iterator's
# sorted-map encoder dies with a nil pointer dereference in reflect.mapiternext whenever
# it meets a map (the apiserver's YAML responses for objects with labels, kube-proxy
# --write-config-to, ...). v1.0.2 is the upstream fix (Kubernetes itself moved
# to it in 1.24) with the same API; Debian ships it, so swap it in.
grep -q '^# github.com/modern-go/reflect2 v1.0.1' vendor/modules.txt \
  || die "vendor/modules.txt no longer pins reflect2 v1.0.1: re-check whether the swap is still needed"
[[ -f $REFLECT2_SRC/go_above_118.go ]] || die "$REFLECT2_SRC is not reflect2 >= 1.0.2"
rm -f vendor/github.com/modern-go/reflect2/*.go vendor/github.com/modern-go/reflect2/*.s
cp "$REFLECT2_SRC"/*.go "$REFLECT2_SRC"/*.s vendor/github.com/modern-go/reflect2/

# --- generated OpenAPI definitions -----------------------------------------------------
openapi=pkg/generated/openapi/zz_generated.openapi.go
if [[ ! -f $openapi ]]; then
  log "generating $openapi with the vendored openapi-gen"
  "$GO" build -o "$WORK/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  # Upstream's selection (Makefile.generated_files, KUBE_OPENAPI_TAG_FILES): every package
  # of the tree (staging/src named as vendor/) with a +k8s:openapi-gen tag, minus the
  # code-generator and sample-apiserver examples.
  dirs=$(find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune -o -type f -name '*.go' -print \
    | { xargs grep -l '^// *+k8s:' || true; } | { xargs grep -l '+k8s:openapi-gen=' || true; } \
    | sed 's|^\./staging/src/|vendor/|; s|^\./||; s|/[^/]*$||' | LC_ALL=C sort -u \
    | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
    | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
  # (grep exits 1 for a batch without matches: tolerated above, so check the count here.)
  (( $(tr ',' '\n' <<<"$dirs" | wc -l) >= 50 )) || die "only found these openapi packages: $dirs"
  "$WORK/openapi-gen" --logtostderr -i "$dirs" -p k8s.io/kubernetes/pkg/generated/openapi \
    -O zz_generated.openapi -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
    -r "$WORK/openapi-violations.report" 2>"$WORK/openapi-gen.log" \
    || { cat "$WORK/openapi-gen.log" >&2; die "openapi-gen failed"; }
  diff -u api/api-rules/violation_exceptions.list "$WORK/openapi-violations.report" >&2 \
    || die "openapi-gen's API rule report differs from upstream's list: the generated definitions would not be upstream's"
  [[ -f $openapi ]] || die "openapi-gen wrote no $openapi"
fi

# --- build ------------------------------------------------------------------------------
# Slipway's own config checker (scripts/kubernetes/configcheck.go) is built against this
# very tree, so tests can validate KubeletConfiguration & co with the binaries' own code.
mkdir -p cmd/slipway-configcheck
cp "$SCRIPT_DIR/kubernetes/configcheck.go" cmd/slipway-configcheck/main.go

STAGE=$OUT/bin.partial
mkdir -p "$STAGE" "$OUT/tools"
log "go build ${BINARIES[*]} ($("$GO" version | cut -d' ' -f3), CGO_ENABLED=0, $(nproc) cores)"
pkgs=()
for b in "${BINARIES[@]}"; do pkgs+=("./cmd/$b"); done
# One go build for all of them: packages they share compile once, links run in parallel.
"$GO" build -trimpath -ldflags "$ldflags" -o "$STAGE/" "${pkgs[@]}"
"$GO" build -trimpath -ldflags "-s -w" -o "$OUT/tools/slipway-configcheck" ./cmd/slipway-configcheck

# --- verify -----------------------------------------------------------------------------
for b in "${BINARIES[@]}"; do
  if [[ $b == kubectl ]]; then
    got=$("$STAGE/$b" version --client --short 2>/dev/null || true)
  else
    got=$("$STAGE/$b" --version 2>/dev/null || true)
  fi
  [[ $got == *"$VERSION"* ]] || die "$b reports '$got', not $VERSION: version stamping failed"
  log "$b: $got"
done

mv "$STAGE" "$BIN"
(cd "$BIN" && sha256sum "${BINARIES[@]}" > SHA256SUMS)
cat > "$OUT/BUILDINFO" <<EOF
version=$VERSION
debian_source=kubernetes $src_version
git_commit=$commit
git_tree_state=archive
build_date=$build_date
go=$("$GO" version | cut -d' ' -f3)
cgo=0
built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
build_seconds=$(( $(date +%s) - started ))
EOF
# Last: from here on a warm run trusts the cache.
touch "$OUT/.complete"
log "built in $(( $(date +%s) - started ))s into $BIN"
echo "$BIN"
