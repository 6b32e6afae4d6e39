#!/usr/bin/env bash
# Everything `slipway rehearse` needs on a Debian 12 host, from Debian's archive only:
# the packages it runs, the Kubernetes binaries built from Debian's source
# (scripts/build-kubernetes.sh, ~4.5 min cold) and the Debian tree the machines boot
# (scripts/build-rehearsal-tree.sh, ~80 s cold). Both are cached under
# /var/cache/slipway/, so a second run only checks. Run as root.
#
#   sudo bash scripts/rehearsal-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "rehearsal-deps: run as root" >&2; exit 1; }

PKGS=(systemd-container debootstrap iproute2 curl util-linux busybox-static ignition
      etcd-client ca-certificates)
source scripts/install-missing.sh
install_missing rehearsal-deps "${PKGS[@]}"
echo "rehearsal-deps: Kubernetes binaries in $(bash scripts/build-kubernetes.sh | tail -1)" >&2
echo "rehearsal-deps: Debian tree in $(bash scripts/build-rehearsal-tree.sh | tail -1)" >&2
echo "rehearsal-deps: node OS image in $(bash scripts/build-os-image.sh | tail -1)" >&2
