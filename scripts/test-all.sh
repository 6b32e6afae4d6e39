#!/usr/bin/env bash
# The README's test command: on a fresh Debian 12 machine (as root), install what the
# tests need — the real consumers from Debian, the npm packages, Kubernetes v1.20.2 built
# from Debian's source and the rehearsal's Debian tree (both cached outside the clone) —
# then run every test. Safe to re-run: installs only what is missing. CI runs this too.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real consumers the tests check every artifact with (see README "Tests").
PKGS=(etcd-server etcd-client haproxy keepalived isc-dhcp-server kea-dhcp4-server dnsmasq-base
      ignition golang-cfssl openssl systemd iproute2 curl ca-certificates dbus-daemon tcpdump
      isc-dhcp-client isc-dhcp-relay udhcpc busybox-static tftp-hpa atftp tftpd-hpa
      qemu-system-x86 ipxe-qemu ipxe pxelinux syslinux-common ovmf linux-image-amd64 cpio
      chromium docker-registry skopeo containerd containernetworking-plugins iptables
      systemd-container debootstrap util-linux radvd ndisc6 chrony ntpsec-ntpdig
      syslinux syslinux-efi mtools dosfstools fdisk qemu-utils e2fsprogs kmod zstd
      openssh-client openssh-server
      openipmi ipmitool llvm)
# kubectl: Debian's kubernetes-client, unless some kubectl is already installed.
command -v kubectl >/dev/null 2>&1 || PKGS+=(kubernetes-client)
source scripts/install-missing.sh
install_missing ci "${PKGS[@]}"

npm ci --no-audit --no-fund
# Real Kubernetes v1.20 binaries built from Debian's source (cached in
# /var/cache/slipway/kubernetes/<version>/, outside the clone: ~4.5 min cold, instant warm);
# test/versions.binaries.test.ts checks the rendered flags and configs against them.
bash scripts/build-kubernetes.sh >/dev/null
# Slipway's node OS (docs/os-image.md): its Debian tree (cached in /var/cache/slipway/rootfs/,
# debootstrap from the mirror), then the image every VM installs and every container of the
# containers rehearsal boots (cached in /var/cache/slipway/os-image/). The tests would
# build it too, but not in parallel.
bash scripts/build-rehearsal-tree.sh >/dev/null
bash scripts/build-os-image.sh >/dev/null
# CI=true: a test that would skip for something missing fails instead (test/helpers/ci-no-skips.ts)
CI=true npm test
