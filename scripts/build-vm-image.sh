#!/usr/bin/env bash
# Build (once) the OS the rehearsal VMs run: a Debian 12 stand-in for Flatcar, from
# Debian packages only, bootable by Slipway's network boot AND from its own disk.
#
#   scripts/build-vm-image.sh
#
# Prints the output directory as the LAST line of stdout:
#   /var/cache/slipway/vm-image/<key>/
#     vmlinuz      Debian's kernel (the host's linux-image-amd64)        → assets os/vmlinuz
#     initrd.img   busybox + virtio/ext4 modules + the real Ignition,
#                  /init = scripts/vm-image/init                         → assets os/initrd.img
#     disk.img     raw, sparse, MBR: p1 FAT "BOOT" (SYSLINUX for BIOS and
#                  EFI/BOOT/BOOTX64.EFI for UEFI, the same vmlinuz, the
#                  initramfs without Ignition, root=LABEL=ROOT), p2 ext4 "ROOT" (the rehearsal tree
#                  + udev + kernel modules + VM settings). Give each VM a copy-on-write
#                  overlay: qemu-img create -f qcow2 -b disk.img -F raw vm.qcow2
#     MANIFEST     inputs, sizes, build seconds per step
# <key> = a hash of every input (the tree's key, the kernel, the Ignition and busybox
# binaries, the packages added, this script and scripts/vm-image/*), so a changed input
# builds a new image beside the old one; a warm run only prints the path.
#
# Nothing is mounted: the ext4 file system is made from a directory (mkfs.ext4 -d), the
# FAT one with mtools, SYSLINUX is installed by its mtools installer (`syslinux`), and
# the partitions are written into the disk file at their offsets. See docs/vm-image.md.
#
# Environment:
#   SLIPWAY_CACHE   cache root (default /var/cache/slipway)
set -euo pipefail

# Bump when the layout changes in a way the hashed inputs do not show (they include this
# script, so that is rare).
IMAGE_REVISION=1
# The root partition (MiB): the rehearsal tree is ~420 MB; the rest is room for the
# binaries a machine fetches and for containerd. Sparse: unused space costs nothing.
ROOT_MB=4096
# The boot partition (MiB): the kernel (~8 MB) and initramfs (~20 MB), with room to spare.
BOOT_MB=64
# Packages the VM needs that the containers' tree leaves out (containers have no devices):
# udev names and initializes the NIC (systemd-networkd waits for it) and the disk.
EXTRA_PACKAGES=(udev)
# Kernel modules the initramfs loads, in this order (their dependencies come first).
# crc32c_generic: ext4 checksums its metadata with the crypto API's crc32c (softdep).
INITRD_MODULES=(virtio_pci virtio_net virtio_blk crc32c_generic ext4)
# Kernel modules the installed system gets (+ their dependencies): the VM's devices, the
# file systems, and everything containerd, kube-proxy (iptables/ipvs), flannel (vxlan)
# and keepalived may load. Paths relative to /lib/modules/<release>/, as prefixes.
DISK_MODULES=(
  kernel/net/ kernel/lib/ kernel/crypto/ kernel/arch/x86/crypto/
  kernel/fs/ext4/ kernel/fs/jbd2/ kernel/fs/mbcache.ko kernel/fs/overlayfs/ kernel/fs/fat/
  kernel/fs/nls/ kernel/fs/fuse/ kernel/fs/autofs/ kernel/fs/isofs/
  kernel/drivers/virtio/ kernel/drivers/block/virtio_blk.ko kernel/drivers/scsi/virtio_scsi.ko
  kernel/drivers/char/virtio_console.ko kernel/drivers/char/hw_random/
  kernel/drivers/net/virtio_net.ko kernel/drivers/net/net_failover.ko kernel/drivers/net/veth.ko
  kernel/drivers/net/tun.ko kernel/drivers/net/dummy.ko kernel/drivers/net/macvlan.ko
  kernel/drivers/net/vxlan/ kernel/drivers/net/geneve.ko kernel/drivers/net/ipvlan/
  kernel/drivers/net/bonding/ kernel/drivers/net/wireguard/
)
# ... but not the radios a VM (or a Kubernetes node) has no use for.
DISK_MODULES_EXCLUDE=(
  kernel/net/wireless/ kernel/net/mac80211/ kernel/net/bluetooth/ kernel/net/nfc/
  kernel/net/ieee802154/ kernel/net/mac802154/ kernel/net/6lowpan/ kernel/net/rfkill/
)
IGNITION_BIN=/usr/lib/dracut/modules.d/30ignition/ignition
SYSLINUX_BIOS=/usr/lib/syslinux/modules/bios
SYSLINUX_EFI=/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi
SYSLINUX_EFI_MODULES=/usr/lib/syslinux/modules/efi64
MBR=/usr/lib/syslinux/mbr/mbr.bin

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FILES=$HERE/vm-image

log() { echo "build-vm-image: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (the rehearsal tree's debootstrap, chroot)"

# --- what the build needs on the host, by Debian package -------------------------------
need=()
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v mkfs.fat >/dev/null || need+=(dosfstools)
command -v mcopy >/dev/null || need+=(mtools)
command -v syslinux >/dev/null || need+=(syslinux)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null || need+=(kmod)
[[ -f $MBR && -d $SYSLINUX_BIOS ]] || need+=(syslinux-common)
[[ -f $SYSLINUX_EFI ]] || need+=(syslinux-efi)
[[ -x $IGNITION_BIN ]] || need+=(ignition)
{ [[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
if (( ${#need[@]} )); then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- inputs ----------------------------------------------------------------------------
# The newest kernel with both its image and its modules (what linux-image-amd64 installed).
RELEASE=
for m in /lib/modules/*/modules.dep; do
  r=$(basename "$(dirname "$m")")
  [[ -f /boot/vmlinuz-$r ]] && RELEASE=$(printf '%s\n%s\n' "$RELEASE" "$r" | sed '/^$/d' | sort -V | tail -n1)
done
[[ -n $RELEASE ]] || die "no /boot/vmlinuz-<release> with /lib/modules/<release>: install linux-image-amd64"
MODDIR=/lib/modules/$RELEASE

TREE=$(bash "$HERE/build-rehearsal-tree.sh" | tail -n1)
[[ -x $TREE/lib/systemd/systemd ]] || die "the rehearsal tree $TREE has no systemd"
TREE_KEY=$(basename "$(dirname "$TREE")")
SYSTEMD_VERSION=$(chroot "$TREE" dpkg-query -W -f '${Version}' systemd)

KEY=$( {
  echo "revision=$IMAGE_REVISION root_mb=$ROOT_MB boot_mb=$BOOT_MB"
  echo "tree=$TREE_KEY $(sha256sum <"$(dirname "$TREE")/MANIFEST" | cut -c1-64)"
  echo "extra=${EXTRA_PACKAGES[*]} systemd=$SYSTEMD_VERSION"
  echo "kernel=$RELEASE initrd_modules=${INITRD_MODULES[*]} disk_modules=${DISK_MODULES[*]} -${DISK_MODULES_EXCLUDE[*]}"
  sha256sum "/boot/vmlinuz-$RELEASE" "$MODDIR/modules.dep" "$IGNITION_BIN" /bin/busybox "$MBR" "$SYSLINUX_EFI" \
    "$SYSLINUX_BIOS/ldlinux.c32" "$SYSLINUX_EFI_MODULES/ldlinux.e64" "${BASH_SOURCE[0]}" "$FILES"/* | cut -c1-64
  syslinux --version 2>&1 | head -n1
} | sha256sum | cut -c1-16)
ROOT=${SLIPWAY_CACHE:-/var/cache/slipway}/vm-image
OUT=$ROOT/$KEY

complete() { [[ -f $OUT/.complete && -f $OUT/disk.img && -f $OUT/initrd.img && -f $OUT/vmlinuz ]]; }
if complete; then
  touch "$OUT"   # last used, for whoever prunes the cache
  echo "$OUT"
  exit 0
fi

mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock -w 1800 9 || die "another build holds $ROOT/.lock"
if complete; then echo "$OUT"; exit 0; fi

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
started=$(now_ms)
step_at=$started
timings=()
secs() { printf '%d.%d' $(( $1 / 1000 )) $(( $1 % 1000 / 100 )); }
step() { # step NAME: record the seconds since the previous step
  local now; now=$(now_ms)
  timings+=("$1=$(secs $((now - step_at)))s")
  step_at=$now
}

WORK=$ROOT/.build-$KEY.$$
rm -rf "$OUT" "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/rootfs
INITRD=$WORK/initrd

# --- 1. the root file system: a copy of the tree (the cache stays pristine) --------------
log "copying the rehearsal tree $TREE"
mkdir -p "$STAGE"
# docs, man pages, translations and apt's lists are 110 MB nobody reads on a test VM
tar -C "$TREE" --exclude=./usr/share/doc --exclude=./usr/share/man --exclude=./usr/share/locale \
  --exclude=./var/lib/apt/lists --exclude=./var/cache/apt -cf - . | tar -C "$STAGE" -xpf -
step copy-tree

# udev, pinned to the tree's systemd version, unpacked by the tree's own dpkg.
log "adding ${EXTRA_PACKAGES[*]} ($SYSTEMD_VERSION)"
mkdir -p "$WORK/debs"
pinned=(); for p in "${EXTRA_PACKAGES[@]}"; do pinned+=("$p=$SYSTEMD_VERSION"); done
(cd "$WORK/debs" && apt-get download -q=2 -o APT::Sandbox::User=root "${pinned[@]}") \
  || die "apt-get download ${EXTRA_PACKAGES[*]}=$SYSTEMD_VERSION failed (apt-get update?)"
mkdir -p "$STAGE/tmp/debs"
cp "$WORK"/debs/*.deb "$STAGE/tmp/debs/"
# no daemon may start from a maintainer script inside the chroot
printf '#!/bin/sh\nexit 101\n' >"$STAGE/usr/sbin/policy-rc.d"
chmod 755 "$STAGE/usr/sbin/policy-rc.d"
if ! chroot "$STAGE" sh -c 'dpkg -i /tmp/debs/*.deb' >"$WORK/dpkg.log" 2>&1; then
  tail -20 "$WORK/dpkg.log" >&2
  die "dpkg -i ${EXTRA_PACKAGES[*]} in the image failed"
fi
rm -rf "$STAGE/tmp/debs" "$STAGE/usr/sbin/policy-rc.d"
step add-packages

# Kernel modules: the DISK_MODULES prefixes plus everything they depend on, then depmod.
log "kernel modules from $MODDIR"
mods=$(awk -v want="${DISK_MODULES[*]}" -v unwanted="${DISK_MODULES_EXCLUDE[*]}" '
  BEGIN { n = split(want, p, " "); x = split(unwanted, q, " ") }
  { sub(":", "", $1); dep[$1] = ""; for (i = 2; i <= NF; i++) dep[$1] = dep[$1] " " $i
    for (i = 1; i <= x; i++) if (index($1, q[i]) == 1) next
    for (i = 1; i <= n; i++) if (index($1, p[i]) == 1) { root[$1] = 1; break } }
  function add(m,   d, k, j) { if (m in got) return; got[m] = 1; k = split(dep[m], d, " "); for (j = 1; j <= k; j++) add(d[j]) }
  END { for (m in root) add(m); for (m in got) print m }' "$MODDIR/modules.dep" | sort)
mkdir -p "$STAGE/usr/lib/modules/$RELEASE"
(cd "$MODDIR" && printf '%s\n' $mods modules.order modules.builtin $(ls modules.builtin.modinfo 2>/dev/null) | cpio -pdm --quiet "$STAGE/usr/lib/modules/$RELEASE")
depmod -b "$STAGE" "$RELEASE"
step modules

# --- 2. make the container tree a machine ------------------------------------------------
put() { # put PATH MODE: write stdin to the image (replacing, never writing through, a file)
  rm -f "$STAGE$1"
  mkdir -p "$(dirname "$STAGE$1")"
  cat >"$STAGE$1"
  chmod "$2" "$STAGE$1"
}
put /etc/fstab 644 <<'EOF'
# The root file system, by the label build-vm-image.sh gave it. The FAT boot partition
# (label BOOT: SYSLINUX, kernel, initramfs) is not mounted: nothing on the system updates it.
LABEL=ROOT  /  ext4  defaults,errors=remount-ro  0  1
EOF
put /etc/selinux/config 644 <<'EOF'
# No SELinux on this image. Debian's Ignition relabels what it wrote whenever it finds this
# file's SELINUXTYPE; the initramfs's setfiles is a no-op that says so.
SELINUX=disabled
SELINUXTYPE=none
EOF
# The kernel's own NIC names (eth0, eth1, ...), as in the cluster file's `interface:`:
# masking udev's default link policy keeps them (a MAC-matched .network file works
# either way). See systemd.net-naming-scheme(7).
mkdir -p "$STAGE/etc/systemd/network"
ln -sfn /dev/null "$STAGE/etc/systemd/network/99-default.link"
# The machine's own /etc/systemd/network/10-slipway.network (from Ignition) configures its
# static address; network-online.target waits for it (slipway-progress.service wants it).
systemctl --root="$STAGE" enable systemd-networkd.service systemd-networkd-wait-online.service >/dev/null 2>&1
# The containers' tree masks module loading; a VM loads overlay and br_netfilter
# (/etc/modules-load.d/slipway-kubernetes.conf) and whatever else its units ask for.
systemctl --root="$STAGE" unmask systemd-modules-load.service >/dev/null 2>&1
# A root shell on the serial console (the VM's only console, QEMU's stdio on the host;
# the tree's root has no password): for looking around a rehearsal machine.
put /etc/systemd/system/serial-getty@ttyS0.service.d/10-autologin.conf 644 <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 - $TERM
EOF
systemctl --root="$STAGE" enable serial-getty@ttyS0.service >/dev/null 2>&1
# The API VIP: Slipway renders haproxy's and keepalived's configs, the OS carries the
# programs and their units (Flatcar needs them from the bundle). Both are enabled here,
# each conditioned on its rendered config, so only control-plane machines with a VIP run
# them; Debian's sample configs go, so "has a config" means "Slipway wrote one".
rm -f "$STAGE/etc/haproxy/haproxy.cfg" "$STAGE/etc/keepalived/keepalived.conf"
for u in haproxy keepalived; do
  cfg=/etc/haproxy/haproxy.cfg; [[ $u == keepalived ]] && cfg=/etc/keepalived/keepalived.conf
  printf '[Unit]\nConditionPathExists=%s\n' "$cfg" | put "/etc/systemd/system/$u.service.d/10-slipway.conf" 644
  systemctl --root="$STAGE" enable "$u.service" >/dev/null 2>&1
  [[ -L $STAGE/etc/systemd/system/multi-user.target.wants/$u.service ]] || die "$u was not enabled"
done
# Boot work a rehearsal machine has no use for, masked: loading modules for hardware and
# features it has not (DRM, device mapper, loop, FUSE, configfs, EFI pstore) and e2scrub's
# LVM snapshot clean-up. Under TCG each of these costs its VM's one vCPU ~2.5-3 s at boot
# (systemd-analyze blame), and five VMs share two cores. The kernel still loads what a
# unit asks for (modprobe, modules-load.d), so this only skips the eager loading.
systemctl --root="$STAGE" mask modprobe@drm.service modprobe@dm_mod.service modprobe@loop.service \
  modprobe@fuse.service modprobe@configfs.service modprobe@efi_pstore.service systemd-pstore.service \
  e2scrub_reap.service >/dev/null 2>&1
[[ $(readlink "$STAGE/etc/systemd/system/modprobe@drm.service") == /dev/null ]] || die "modprobe@drm was not masked"
# Ignition writes the hostname; this is what a machine shows before it ran.
echo slipway-vm | put /etc/hostname 644
put /etc/slipway-vm-image 644 <<EOF
Slipway rehearsal VM image $KEY: Debian 12 ($TREE_KEY) + ${EXTRA_PACKAGES[*]}, kernel $RELEASE
EOF
[[ -L $STAGE/etc/systemd/system/multi-user.target.wants/systemd-networkd.service ]] || die "systemd-networkd was not enabled"
[[ -x $STAGE/lib/systemd/systemd-udevd ]] || die "udev is missing from the image"
step configure

rootfs_mb=$(du -sm "$STAGE" | cut -f1)

# --- 4. the initramfs --------------------------------------------------------------------
log "initramfs: busybox, Ignition, modules ${INITRD_MODULES[*]}"
mkdir -p "$INITRD"/{bin,sbin,dev,proc,sys,run,tmp,etc,usr/bin,usr/sbin,lib/modules,sysroot}
cp /bin/busybox "$INITRD/bin/busybox"
for a in $("$INITRD/bin/busybox" --list); do
  [[ $a == busybox || -e $INITRD/bin/$a ]] || ln -s busybox "$INITRD/bin/$a"
done
install -m 0755 "$FILES/init" "$INITRD/init"
install -m 0755 "$FILES/udhcpc.script" "$INITRD/etc/udhcpc.script"
install -m 0755 "$FILES/setfiles" "$INITRD/usr/sbin/setfiles"
install -m 0755 "$IGNITION_BIN" "$INITRD/usr/bin/ignition"
# its shared libraries, where ldd says the loader looks for them
for lib in $(ldd "$IGNITION_BIN" | awk '/=> \// { print $3 } /^[ \t]*\/[^ ]+ \(/ { print $1 }'); do
  mkdir -p "$INITRD$(dirname "$lib")"
  cp -L "$lib" "$INITRD$lib"
done
# modules, flat, in load order (dependencies first); builtin ones need nothing
order=$(awk -v want="${INITRD_MODULES[*]}" '
  function base(p,  n, a) { n = split(p, a, "/"); sub(/\.ko$/, "", a[n]); gsub("-", "_", a[n]); return a[n] }
  FILENAME ~ /builtin$/ { builtin[base($1)] = 1; next }
  { sub(":", "", $1); name = base($1); path[name] = $1; dep[name] = ""
    for (i = 2; i <= NF; i++) dep[name] = dep[name] " " base($i) }
  function visit(m,   d, k, j) {
    if (m in seen || m in builtin) return
    if (!(m in path)) { print "MISSING " m; return }
    seen[m] = 1; k = split(dep[m], d, " "); for (j = 1; j <= k; j++) visit(d[j]); print path[m] }
  END { n = split(want, w, " "); for (i = 1; i <= n; i++) visit(w[i]) }' "$MODDIR/modules.builtin" "$MODDIR/modules.dep")
if grep -q '^MISSING' <<<"$order"; then die "kernel modules not found in $MODDIR: $(grep '^MISSING' <<<"$order" | tr '\n' ' ')"; fi
for ko in $order; do
  [[ $ko == *.ko ]] || die "$ko is compressed; busybox insmod needs plain .ko files"
  cp "$MODDIR/$ko" "$INITRD/lib/modules/"
  basename "$ko" >>"$INITRD/lib/modules/load.order"
done
mknod -m 600 "$INITRD/dev/console" c 5 1
# sorted names, owner root, fixed mtimes, gzip -n: the same inputs give the same bytes
pack() { (cd "$INITRD" && find . -print0 | LC_ALL=C sort -z | cpio --null --reproducible -o -H newc -R 0:0 --quiet | gzip -n -6 >"$1"); }
pack "$WORK/initrd.img"
# The disk's own copy boots the installed system only (its command line has no first-boot
# flag): without Ignition it is 2 MB instead of 9, which the boot loader reads ~4x faster
# through the firmware's disk calls (seconds, under TCG).
rm "$INITRD/usr/bin/ignition"
pack "$WORK/initrd-disk.img"
cp "/boot/vmlinuz-$RELEASE" "$WORK/vmlinuz"
step initramfs

# --- 5. the boot partition: SYSLINUX (BIOS) and syslinux.efi (UEFI), kernel, initramfs ---
log "boot partition (FAT, SYSLINUX)"
cmdline="root=LABEL=ROOT rw console=tty0 console=ttyS0,115200n8"
syslinux_cfg() {
  cat <<EOF
# Slipway rehearsal VM: boot the installed system from this disk (no ignition.firstboot:
# the initramfs mounts ROOT and starts its systemd without running Ignition).
SERIAL 0 115200
DEFAULT slipway
PROMPT 0
TIMEOUT 0
SAY SYSLINUX: booting the installed Slipway rehearsal system from disk
LABEL slipway
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND $cmdline
EOF
}
syslinux_cfg >"$WORK/syslinux.cfg"
mkfs.fat -C -n BOOT -i "${KEY:8:8}" "$WORK/boot.img" $((BOOT_MB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mcopy -i "$WORK/boot.img" "$WORK/vmlinuz" "$WORK/syslinux.cfg" ::/
mcopy -i "$WORK/boot.img" "$WORK/initrd-disk.img" ::/initrd.img
# the mtools installer: writes ldlinux.sys + ldlinux.c32 and the FAT boot sector
syslinux --install "$WORK/boot.img"
mmd -i "$WORK/boot.img" ::/EFI ::/EFI/BOOT
mcopy -i "$WORK/boot.img" "$SYSLINUX_EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$WORK/boot.img" "$SYSLINUX_EFI_MODULES/ldlinux.e64" "$WORK/syslinux.cfg" ::/EFI/BOOT/
step boot-partition

# --- 6. the disk: MBR boot code, partition table, both file systems at their offsets --
log "disk.img: mkfs.ext4 ROOT (${ROOT_MB} MiB, sparse) at its partition's offset"
boot_start=2048                                      # 1 MiB, in 512-byte sectors
root_start=$((boot_start + BOOT_MB * 2048))
total=$((root_start + ROOT_MB * 2048 + 2048))
truncate -s $((total * 512)) "$WORK/disk.img"
# a fixed disk id and file system UUID (from the key): the same inputs give the same image
sfdisk -q --no-reread --no-tell-kernel "$WORK/disk.img" <<EOF
label: dos
label-id: 0x${KEY:0:8}
start=$boot_start, size=$((BOOT_MB * 2048)), type=c, bootable
start=$root_start, size=$((ROOT_MB * 2048)), type=83
EOF
# SYSLINUX's MBR code (440 bytes; the partition table after it stays) boots the active partition
dd if="$MBR" of="$WORK/disk.img" bs=440 count=1 conv=notrunc status=none
dd if="$WORK/boot.img" of="$WORK/disk.img" bs=1M seek=$((boot_start / 2048)) conv=notrunc status=none
rm -f "$WORK/boot.img"
uuid=$(echo "$KEY-root" | sha256sum | sed -E 's/^(.{8})(.{4}).(.{3}).(.{3})(.{12}).*/\1-\2-4\3-8\4-\5/')
# -E offset: the file system starts at the partition, inside the disk file; -d: its
# contents come from the staged directory (no mount, no loop device)
mkfs.ext4 -q -F -L ROOT -U "$uuid" -E offset=$((root_start * 512)),root_owner=0:0 -d "$STAGE" "$WORK/disk.img" "${ROOT_MB}M"
e2fsck -fn "$WORK/disk.img?offset=$((root_start * 512))" >"$WORK/fsck.log" 2>&1 \
  || { cat "$WORK/fsck.log" >&2; die "the new ROOT file system does not check clean"; }
rm -rf "$STAGE"
step disk

# --- done ------------------------------------------------------------------------------
total_ms=$(( $(now_ms) - started ))
mkdir -p "$WORK/out"
mv "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/disk.img" "$WORK/dpkg.log" "$WORK/out/"
{
  echo "key=$KEY"
  echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "build_seconds=$(secs $total_ms)"
  echo "steps=${timings[*]}"
  echo "tree=$TREE"
  echo "kernel=$RELEASE"
  echo "systemd=$SYSTEMD_VERSION extra_packages=${EXTRA_PACKAGES[*]}"
  echo "ignition=$("$IGNITION_BIN" -version 2>&1 | head -n1)"
  echo "initrd_modules=$(tr '\n' ' ' <"$INITRD/lib/modules/load.order")"
  echo "disk_modules=$(wc -w <<<"$mods") ($(cd "$MODDIR" && du -smc $mods | tail -n1 | cut -f1) MB)"
  echo "rootfs_mb=$rootfs_mb"
  echo "kernel_cmdline_disk_boot=$cmdline"
  echo "sizes:"
  echo "  initrd.img on the disk (no Ignition) $(du -m --apparent-size "$WORK/initrd-disk.img" | cut -f1)M"
  for f in vmlinuz initrd.img disk.img; do
    echo "  $f apparent=$(du -m --apparent-size "$WORK/out/$f" | cut -f1)M allocated=$(du -m "$WORK/out/$f" | cut -f1)M"
  done
} >"$WORK/out/MANIFEST"
# one rename: nobody sees a half-written image
mv "$WORK/out" "$OUT"
touch "$OUT/.complete"
# Every changed input makes a new key: images nobody used for two weeks go (a warm run
# touches its directory).
find "$ROOT" -mindepth 1 -maxdepth 1 -type d -name '[0-9a-f]*' -mtime +14 ! -path "$OUT" -exec rm -rf {} + 2>/dev/null || true
log "built $OUT in $(secs $total_ms)s (${timings[*]})"
echo "$OUT"
