#!/usr/bin/env bash
# Build (once) the Debian 12 root tree Slipway's node OS is made from
# (scripts/build-os-image.sh turns it into the disk image real machines get) and every
# machine of the containers rehearsal boots: systemd as PID 1 plus what a Slipway machine
# runs besides the Kubernetes binaries (containerd, runc, CNI plugins, etcd, haproxy,
# keepalived, iptables, conntrack, curl), time sync, openssh-server, and Debian's kernel
# with its firmware.
#
#   scripts/build-rehearsal-tree.sh
#
# Prints the tree's path as the LAST line of stdout:
#   /var/cache/slipway/rootfs/<key>/tree
# <key> = suite + a hash of the package list, the mirror and this script's TREE_REVISION,
# so a changed list builds a new tree beside the old one. A warm run only prints the path.
# The tree is never booted directly: each container gets an overlayfs (tree read-only
# below, its own writable upper dir), so the cache stays pristine (see
# docs/kubernetes-build.md, "Containers rehearsal").
#
# Environment:
#   SLIPWAY_CACHE   cache root (default /var/cache/slipway)
#   SLIPWAY_MIRROR  the Debian mirror (default: the one apt uses here, else deb.debian.org)
set -euo pipefail

SUITE=bookworm
# Bump when the post-install tweaks below change (the package list is hashed anyway).
TREE_REVISION=2
PACKAGES=(
  systemd systemd-sysv dbus libpam-systemd       # PID 1 inside each container
  iproute2 iputils-ping procps kmod less          # looking around a booted machine
  ca-certificates curl                            # slipway-binaries.service fetches with curl
  containerd runc containernetworking-plugins     # the container runtime and CNI plugins
  etcd-server etcd-client                         # etcd members on control-plane machines
  haproxy keepalived                              # the API VIP
  iptables conntrack ebtables ethtool socat       # kube-proxy and kubelet's needs
  systemd-timesyncd                               # the clock, before etcd and TLS (not masked)
  openssh-server                                  # the operator's way in (host keys made per machine)
  linux-image-amd64 firmware-linux-free           # the node OS's kernel and modules (build-os-image.sh)
)
# Firmware some server NICs need to work at all (bnx2, bnx2x; tg3's older chips, ice's DDP
# package, Realtek's r8169 chips), from Debian's non-free-firmware component: only when the
# mirror carries it. build-os-image.sh copies the files its modules name, not the packages.
NONFREE_FIRMWARE=(firmware-bnx2 firmware-bnx2x firmware-misc-nonfree firmware-realtek)

log() { echo "build-rehearsal-tree: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (debootstrap, chroot)"

# The mirror apt already uses here (developers and CI reach the same one), or SLIPWAY_MIRROR.
MIRROR=${SLIPWAY_MIRROR:-}
[[ -n $MIRROR ]] || MIRROR=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[[ -n $MIRROR ]] || MIRROR=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
[[ -n $MIRROR ]] || MIRROR=http://deb.debian.org/debian

MIRROR=${MIRROR%/}

# Does the mirror carry non-free-firmware? (its Release file lists its components)
COMPONENTS=main
release=$(curl -fsS -m 30 "$MIRROR/dists/$SUITE/Release" 2>/dev/null || true)
if grep -q '^Components:.*non-free-firmware' <<<"$release"; then
  COMPONENTS=main,non-free-firmware
  PACKAGES+=("${NONFREE_FIRMWARE[@]}")
else
  log "warning: $MIRROR has no non-free-firmware component: no ${NONFREE_FIRMWARE[*]} (some Broadcom and Intel NICs will not work)"
fi

sorted=$(printf '%s\n' "${PACKAGES[@]}" | LC_ALL=C sort -u)
KEY=$SUITE-$(printf '%s\n%s\n%s\n%s\n' "$TREE_REVISION" "$MIRROR" "$COMPONENTS" "$sorted" | sha256sum | cut -c1-12)
ROOT=${SLIPWAY_CACHE:-/var/cache/slipway}/rootfs
OUT=$ROOT/$KEY
TREE=$OUT/tree

if [[ -f $OUT/.complete && -x $TREE/lib/systemd/systemd ]]; then
  echo "$TREE"
  exit 0
fi

mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock -w 1800 9 || die "another build holds $ROOT/.lock"
if [[ -f $OUT/.complete && -x $TREE/lib/systemd/systemd ]]; then
  echo "$TREE"
  exit 0
fi

command -v debootstrap >/dev/null || {
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

started=$(date +%s)
rm -rf "$OUT"
mkdir -p "$OUT"
log "debootstrap $SUITE from $MIRROR into $TREE (${#PACKAGES[@]} extra packages)"
# minbase + the list: no recommends, nothing interactive. debootstrap replaces
# start-stop-daemon/invoke-rc.d with no-ops while installing, so no daemon starts on the host.
if ! debootstrap --variant=minbase --include="$(printf '%s\n' "${PACKAGES[@]}" | paste -sd, -)" \
    --components="$COMPONENTS" "$SUITE" "$TREE" "$MIRROR" >"$OUT/debootstrap.log" 2>&1; then
  tail -30 "$OUT/debootstrap.log" >&2
  die "debootstrap failed (full log: $OUT/debootstrap.log)"
fi

# --- make it a machine template -------------------------------------------------------
# Empty machine-id: systemd makes a fresh one at each container's first boot.
: > "$TREE/etc/machine-id"
rm -f "$TREE/var/lib/dbus/machine-id"
echo rehearsal > "$TREE/etc/hostname"
# Root logs in on the nspawn console without a password (a throwaway test machine).
chroot "$TREE" passwd -d root >/dev/null
# The rehearsal enables exactly what a machine's rendered units say; Debian's packages
# would otherwise start etcd/haproxy/keepalived/containerd with their default configs.
for u in etcd haproxy keepalived containerd; do
  chroot "$TREE" systemctl disable "$u.service" >/dev/null 2>&1 || true
done
# Units that make no sense in a container (no modules to load, no apt runs). Not
# systemd-timesyncd: the node OS syncs its clock (its unit skips itself in a container,
# ConditionVirtualization=!container).
for u in systemd-modules-load.service apt-daily.timer apt-daily-upgrade.timer; do
  chroot "$TREE" systemctl mask "$u" >/dev/null 2>&1 || true
done
# Slipway installs binaries into /opt/bin; the rehearsal binds the cached ones there.
mkdir -p "$TREE/opt/bin" "$TREE/opt/cni/bin"
# Debian puts the CNI plugins in /usr/lib/cni; Slipway's CNI config expects /opt/cni/bin.
for p in "$TREE"/usr/lib/cni/*; do ln -sf "/usr/lib/cni/$(basename "$p")" "$TREE/opt/cni/bin/"; done
# SSH host keys are each machine's own: none in the tree (openssh-server's postinst made
# some); ssh-keygen -A makes them at a machine's first boot, before sshd starts.
rm -f "$TREE"/etc/ssh/ssh_host_*
cat > "$TREE/etc/systemd/system/slipway-ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Slipway: this machine's own SSH host keys (made at its first boot)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
[Install]
WantedBy=multi-user.target ssh.service
UNIT
chroot "$TREE" systemctl enable slipway-ssh-hostkeys.service >/dev/null 2>&1
[[ -L $TREE/etc/systemd/system/multi-user.target.wants/slipway-ssh-hostkeys.service ]] || die "slipway-ssh-hostkeys was not enabled"
# The kernel package's postinst made an initramfs nobody boots (the node OS has its own,
# scripts/os-image/init): 30+ MB less.
rm -f "$TREE"/boot/initrd.img-*
chroot "$TREE" apt-get clean

{
  echo "suite=$SUITE"
  echo "mirror=$MIRROR"
  echo "components=$COMPONENTS"
  echo "tree_revision=$TREE_REVISION"
  echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "build_seconds=$(( $(date +%s) - started ))"
  echo "packages:"
  chroot "$TREE" dpkg-query -W -f '  ${Package} ${Version}\n' "${PACKAGES[@]}"
} > "$OUT/MANIFEST"
touch "$OUT/.complete"
log "built in $(( $(date +%s) - started ))s ($(du -sh "$TREE" | cut -f1))"
echo "$TREE"
