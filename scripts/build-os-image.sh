#!/usr/bin/env bash
# Build (once) Slipway's node OS: Debian 12 from Debian packages only, as the image a
# blank machine's installer writes to its disk, plus that installer.
#
#   scripts/build-os-image.sh [-o DIR]
#
# Prints the image directory as the LAST line of stdout:
#   $SLIPWAY_CACHE/os-image/<key>/            (default /var/cache/slipway/os-image/<key>/)
#     vmlinuz       Debian's kernel (the tree's own linux-image-amd64)      → assets os/vmlinuz
#     initrd.img    the installer initramfs: busybox, /init = scripts/os-image/init, the
#                   real Ignition, zstd, sfdisk, e2fsck, resize2fs, storage + NIC modules
#                   and their firmware                                     → assets os/initrd.img
#     disk.img.zst  zstd of the raw disk: MBR, p1 FAT "BOOT" (SYSLINUX for BIOS and
#                   EFI/BOOT/BOOTX64.EFI for UEFI, the kernel, the disk's own small
#                   initramfs, root=LABEL=ROOT), p2 ext4 "ROOT" sized to its content plus
#                   a margin (the installer grows it to the disk)          → assets os/disk.img.zst
#     root/         the exact directory the ext4 file system was made from
#     os.json       machine-readable manifest (files + sha256, packages, modules,
#                   firmware, inputs, build seconds)                       → assets os/os.json
#     MANIFEST      the same for people
# With -o DIR the image's files (not root/) are also copied to DIR (made atomically: a
# temporary directory beside it, renamed into place); the last line is then DIR.
#
# <key> = a hash of every input (the tree's key and manifest, the kernel, the Ignition,
# busybox, zstd and e2fsprogs binaries, the module and firmware lists, this script and
# scripts/os-image/*), so a changed input builds a new image beside the old one; a warm
# run only prints the path.
#
# Nothing is mounted: the ext4 file system is made from a directory (mkfs.ext4 -d), the
# FAT one with mtools, SYSLINUX is installed by its mtools installer (`syslinux`), and
# the partitions are written into the disk file at their offsets. See docs/os-image.md.
#
# Environment:
#   SLIPWAY_CACHE   cache root (default /var/cache/slipway)
#   SLIPWAY_MIRROR  the Debian mirror the tree is made from (build-rehearsal-tree.sh)
#   SLIPWAY_OS_OUT  the same as -o DIR
set -euo pipefail

# Bump when the layout changes in a way the hashed inputs do not show (they include this
# script, so that is rare).
IMAGE_REVISION=2
OS_NAME=slipway-debian-12
# The boot partition (MiB): the kernel (~8 MB) and the disk's initramfs (~5 MB), with room.
BOOT_MB=64
# The root partition: its content plus this share and this many MiB (rounded up to 64 MiB).
# The installer grows partition and file system to the disk; the image itself stays small,
# so writing it is fast.
ROOT_MARGIN_PERCENT=20
ROOT_MARGIN_MB=96
# zstd level for disk.img.zst (decompression speed barely depends on it).
ZSTD_LEVEL=12

# Kernel modules both initramfs images load, in this order (dependencies first, from
# modules.dep): disks and file systems. busybox insmod, no udev: every driver is loaded, the
# ones without hardware just stay idle.
# crc32c_generic: ext4 checksums its metadata with the crypto API's crc32c (softdep).
STORAGE_MODULES=(
  virtio_pci virtio_blk virtio_scsi
  ahci ata_piix sd_mod nvme vmd
  megaraid_sas mpt3sas hpsa smartpqi aacraid
  crc32c_generic ext4 vfat nls_cp437 nls_iso8859_1
)
# ... and the installer's NICs (it downloads the image; the installed system's udev loads
# the NIC driver from the root's modules itself).
NIC_MODULES=(
  virtio_net
  e1000 e1000e igb igc ixgbe i40e ice
  tg3 bnx2 bnx2x bnxt_en
  mlx4_en mlx5_core
  r8169
)
# Kernel modules the installed system gets (+ their dependencies): the hardware above and
# what containerd, kube-proxy (iptables/ipvs), flannel (vxlan) and keepalived may load.
# Paths relative to /lib/modules/<release>/, as prefixes.
ROOT_MODULES=(
  kernel/net/ kernel/lib/ kernel/crypto/ kernel/arch/x86/crypto/
  kernel/fs/ext4/ kernel/fs/jbd2/ kernel/fs/mbcache.ko kernel/fs/overlayfs/ kernel/fs/fat/
  kernel/fs/nls/ kernel/fs/fuse/ kernel/fs/autofs/ kernel/fs/isofs/
  kernel/drivers/virtio/ kernel/drivers/block/ kernel/drivers/scsi/virtio_scsi.ko
  kernel/drivers/char/virtio_console.ko kernel/drivers/char/hw_random/ kernel/drivers/char/ipmi/
  kernel/drivers/net/virtio_net.ko kernel/drivers/net/net_failover.ko kernel/drivers/net/veth.ko
  kernel/drivers/net/tun.ko kernel/drivers/net/dummy.ko kernel/drivers/net/macvlan.ko
  kernel/drivers/net/vxlan/ kernel/drivers/net/geneve.ko kernel/drivers/net/ipvlan/
  kernel/drivers/net/bonding/ kernel/drivers/net/wireguard/ kernel/drivers/net/team/
  kernel/drivers/net/ethernet/intel/ kernel/drivers/net/ethernet/broadcom/
  kernel/drivers/net/ethernet/mellanox/ kernel/drivers/net/ethernet/realtek/
  kernel/drivers/net/phy/ kernel/drivers/net/mdio/ kernel/drivers/ptp/ kernel/drivers/pps/
  kernel/drivers/ata/ kernel/drivers/nvme/ kernel/drivers/pci/
  kernel/drivers/scsi/sd_mod.ko kernel/drivers/scsi/sr_mod.ko kernel/drivers/scsi/sg.ko
  kernel/drivers/scsi/megaraid/ kernel/drivers/scsi/mpt3sas/ kernel/drivers/scsi/hpsa.ko
  kernel/drivers/scsi/smartpqi/ kernel/drivers/scsi/aacraid/
  kernel/drivers/md/ kernel/drivers/usb/host/ kernel/drivers/usb/storage/
  kernel/drivers/hid/usbhid/ kernel/drivers/hid/hid-generic.ko kernel/drivers/input/
  kernel/drivers/edac/ kernel/drivers/hwmon/
)
# ... but not the radios a Kubernetes node has no use for, nor InfiniBand's user verbs.
ROOT_MODULES_EXCLUDE=(
  kernel/net/wireless/ kernel/net/mac80211/ kernel/net/bluetooth/ kernel/net/nfc/
  kernel/net/ieee802154/ kernel/net/mac802154/ kernel/net/6lowpan/ kernel/net/rfkill/
  kernel/drivers/input/joystick/ kernel/drivers/input/tablet/ kernel/drivers/input/touchscreen/
)
IGNITION_BIN=/usr/lib/dracut/modules.d/30ignition/ignition
SYSLINUX_BIOS=/usr/lib/syslinux/modules/bios
SYSLINUX_EFI=/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi
SYSLINUX_EFI_MODULES=/usr/lib/syslinux/modules/efi64
MBR=/usr/lib/syslinux/mbr/mbr.bin
# What the installer runs besides busybox (from the host's Debian packages, with the
# shared libraries ldd names).
INSTALLER_TOOLS=(/usr/bin/zstd /usr/sbin/sfdisk /usr/sbin/e2fsck /usr/sbin/resize2fs /usr/bin/ipmitool)
# Loaded only to enlist (slipway.enlist=): the host side of the machine's BMC over KCS/SMIC/BT,
# so `ipmitool lan print` reads its LAN address. Not in every boot: probing a BMC that is
# not there costs seconds.
ENLIST_MODULES=(ipmi_msghandler ipmi_si ipmi_devintf)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FILES=$HERE/os-image

log() { echo "build-os-image: $*" >&2; }
die() { log "error: $*"; exit 1; }

COPY_TO=${SLIPWAY_OS_OUT:-}
while (( $# )); do
  case $1 in
    -o) [[ $# -ge 2 ]] || die "-o needs a directory"; COPY_TO=$2; shift 2 ;;
    -o*) COPY_TO=${1#-o}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
    *) die "unknown argument $1 (usage: build-os-image.sh [-o DIR])" ;;
  esac
done

[[ $(id -u) == 0 ]] || die "run as root (the tree's debootstrap, chroot)"

# --- what the build needs on the host, by Debian package -------------------------------
need=()
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v mkfs.fat >/dev/null || need+=(dosfstools)
command -v mcopy >/dev/null || need+=(mtools)
command -v syslinux >/dev/null || need+=(syslinux)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null || need+=(kmod)
command -v zstd >/dev/null || need+=(zstd)
command -v ipmitool >/dev/null || need+=(ipmitool)
command -v curl >/dev/null || need+=(curl)
[[ -f $MBR && -d $SYSLINUX_BIOS ]] || need+=(syslinux-common)
[[ -f $SYSLINUX_EFI ]] || need+=(syslinux-efi)
[[ -x $IGNITION_BIN ]] || need+=(ignition)
{ [[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
if (( ${#need[@]} )); then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- inputs ----------------------------------------------------------------------------
TREE=$(bash "$HERE/build-rehearsal-tree.sh" | tail -n1)
[[ -x $TREE/lib/systemd/systemd ]] || die "the tree $TREE has no systemd"
[[ -x $TREE/lib/systemd/systemd-udevd ]] || die "the tree $TREE has no udev"
TREE_KEY=$(basename "$(dirname "$TREE")")
# The tree's own kernel (its linux-image-amd64): the newest with both image and modules.
RELEASE=
for m in "$TREE"/lib/modules/*/modules.dep; do
  [[ -f $m ]] || continue
  r=$(basename "$(dirname "$m")")
  [[ -f $TREE/boot/vmlinuz-$r ]] && RELEASE=$(printf '%s\n%s\n' "$RELEASE" "$r" | sed '/^$/d' | sort -V | tail -n1)
done
[[ -n $RELEASE ]] || die "the tree $TREE has no /boot/vmlinuz-<release> with /lib/modules/<release> (linux-image-amd64)"
MODDIR=$TREE/lib/modules/$RELEASE
KERNEL_VERSION=$(chroot "$TREE" dpkg-query -W -f '${Version}' "linux-image-$RELEASE")

KEY=$( {
  echo "revision=$IMAGE_REVISION boot_mb=$BOOT_MB root_margin=$ROOT_MARGIN_PERCENT%+${ROOT_MARGIN_MB}M zstd=$ZSTD_LEVEL"
  echo "tree=$TREE_KEY $(sha256sum <"$(dirname "$TREE")/MANIFEST" | cut -c1-64)"
  echo "kernel=$RELEASE $KERNEL_VERSION storage=${STORAGE_MODULES[*]} nic=${NIC_MODULES[*]} enlist=${ENLIST_MODULES[*]}"
  echo "root_modules=${ROOT_MODULES[*]} -${ROOT_MODULES_EXCLUDE[*]}"
  sha256sum "$TREE/boot/vmlinuz-$RELEASE" "$MODDIR/modules.dep" "$IGNITION_BIN" /bin/busybox "$MBR" "$SYSLINUX_EFI" \
    "$SYSLINUX_BIOS/ldlinux.c32" "$SYSLINUX_EFI_MODULES/ldlinux.e64" "${INSTALLER_TOOLS[@]}" \
    "${BASH_SOURCE[0]}" "$FILES"/* | cut -c1-64
  syslinux --version 2>&1 | head -n1
} | sha256sum | cut -c1-16)
CACHE=${SLIPWAY_CACHE:-/var/cache/slipway}/os-image
OUT=$CACHE/$KEY

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { printf '%d.%d' $(( $1 / 1000 )) $(( $1 % 1000 / 100 )); }

# copy_out: with -o DIR, the image's files (not root/) into DIR, all or nothing
copy_out() {
  [[ -n $COPY_TO ]] || { echo "$OUT"; return; }
  local dest parent tmp
  dest=$(realpath -m "$COPY_TO")
  parent=$(dirname "$dest")
  mkdir -p "$parent"
  tmp=$(mktemp -d "$parent/.$(basename "$dest").XXXXXX")
  cp "$OUT"/{vmlinuz,initrd.img,disk.img.zst,os.json,MANIFEST} "$tmp/"
  (cd "$tmp" && sha256sum -c --quiet <(jq_files)) || { rm -rf "$tmp"; die "the copy in $tmp does not match os.json"; }
  chmod 755 "$tmp"
  if [[ -e $dest ]]; then
    [[ -d $dest && -z $(ls -A "$dest") ]] || { rm -rf "$tmp"; die "$dest exists and is not an empty directory"; }
    rmdir "$dest"
  fi
  mv -T "$tmp" "$dest"
  log "copied to $dest"
  echo "$dest"
}
# "sha256  file" lines for the three files os.json names
jq_files() {
  sed -n 's/^  "\(kernel\|initrd\|disk\)": {"file": "\([^"]*\)", "sha256": "\([0-9a-f]*\)".*/\3  \2/p' "$OUT/os.json"
}

complete() { [[ -f $OUT/.complete && -f $OUT/disk.img.zst && -f $OUT/initrd.img && -f $OUT/vmlinuz && -f $OUT/os.json && -d $OUT/root ]]; }
if complete; then
  touch "$OUT"   # last used, for whoever prunes the cache
  copy_out
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 1800 9 || die "another build holds $CACHE/.lock"
if complete; then copy_out; exit 0; fi

started=$(now_ms)
step_at=$started
timings=()
json_timings=()
step() { # step NAME: record the seconds since the previous step
  local now; now=$(now_ms)
  timings+=("$1=$(secs $((now - step_at)))s")
  json_timings+=("\"$1\": $(secs $((now - step_at)))")
  step_at=$now
}

WORK=$CACHE/.build-$KEY.$$
rm -rf "$OUT" "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/out/root
INITRD=$WORK/initrd

# --- 1. the root file system: a copy of the tree (the cache stays pristine) --------------
log "copying the tree $TREE"
mkdir -p "$STAGE"
# docs, man pages, translations and apt's lists: 70 MB nobody reads on a node; the kernel
# modules and firmware are chosen below; /boot's kernel is on the boot partition.
tar -C "$TREE" --exclude=./usr/share/doc --exclude=./usr/share/man --exclude=./usr/share/locale \
  --exclude=./var/lib/apt/lists --exclude=./var/cache/apt --exclude=./lib/modules --exclude=./usr/lib/modules \
  --exclude=./lib/firmware --exclude=./usr/lib/firmware --exclude="./boot/vmlinuz-*" --exclude="./boot/System.map-*" \
  -cf - . | tar -C "$STAGE" -xpf -
step copy-tree

# Kernel modules: the ROOT_MODULES prefixes, the initramfs's modules, and everything they
# depend on, then depmod.
log "kernel $RELEASE ($KERNEL_VERSION): modules"
resolve_modules() { # resolve_modules PREFIXES EXCLUDES NAMES: module paths, dependencies included
  awk -v want="$1" -v unwanted="$2" -v names="$3" '
    function base(p,  n, a) { n = split(p, a, "/"); sub(/\.ko$/, "", a[n]); gsub("-", "_", a[n]); return a[n] }
    BEGIN { n = split(want, p, " "); x = split(unwanted, q, " "); k = split(names, nm, " "); for (i = 1; i <= k; i++) byname[nm[i]] = 1 }
    { sub(":", "", $1); dep[$1] = ""; for (i = 2; i <= NF; i++) dep[$1] = dep[$1] " " $i
      if (base($1) in byname) { root[$1] = 1; next }
      for (i = 1; i <= x; i++) if (index($1, q[i]) == 1) next
      for (i = 1; i <= n; i++) if (index($1, p[i]) == 1) { root[$1] = 1; break } }
    function add(m,   d, k, j) { if (m in got) return; got[m] = 1; k = split(dep[m], d, " "); for (j = 1; j <= k; j++) add(d[j]) }
    END { for (m in root) add(m); for (m in got) print m }' "$MODDIR/modules.dep" | LC_ALL=C sort
}
root_mods=$(resolve_modules "${ROOT_MODULES[*]}" "${ROOT_MODULES_EXCLUDE[*]}" "${STORAGE_MODULES[*]} ${NIC_MODULES[*]}")
mkdir -p "$STAGE/usr/lib/modules/$RELEASE"
(cd "$MODDIR" && printf '%s\n' $root_mods modules.order modules.builtin $(ls modules.builtin.modinfo 2>/dev/null) | cpio -pdm --quiet "$STAGE/usr/lib/modules/$RELEASE")
depmod -b "$STAGE" "$RELEASE"
cp "$TREE/boot/config-$RELEASE" "$STAGE/boot/" 2>/dev/null || true   # kubeadm's preflight reads it

# Firmware: every file a chosen module names (modinfo -F firmware) that Debian's packages in
# the tree carry; the rest is listed as missing in os.json.
firmware_for() { # firmware_for MODULE-PATHS...: "name" lines
  local ko
  for ko in "$@"; do modinfo -F firmware "$MODDIR/$ko" 2>/dev/null; done | LC_ALL=C sort -u
}
copy_firmware() { # copy_firmware DEST NAMES: copy what exists (symlinks followed); print the missing
  local dest=$1 f
  for f in $2; do
    if [[ -e $TREE/lib/firmware/$f ]]; then
      mkdir -p "$dest/$(dirname "$f")"
      cp -L "$TREE/lib/firmware/$f" "$dest/$f"
    else
      echo "$f"
    fi
  done
}
root_fw=$(firmware_for $root_mods)
root_fw_missing=$(copy_firmware "$STAGE/usr/lib/firmware" "$root_fw")
step modules

# --- 2. make the tree a machine ------------------------------------------------------------
put() { # put PATH MODE: write stdin to the image (replacing, never writing through, a file)
  rm -f "$STAGE$1"
  mkdir -p "$(dirname "$STAGE$1")"
  cat >"$STAGE$1"
  chmod "$2" "$STAGE$1"
}
put /etc/fstab 644 <<'EOF'
# The root file system, by the label build-os-image.sh gave it. The FAT boot partition
# (label BOOT: SYSLINUX, kernel, initramfs) is not mounted: nothing on the system updates it.
LABEL=ROOT  /  ext4  defaults,errors=remount-ro  0  1
EOF
put /etc/selinux/config 644 <<'EOF'
# No SELinux on this image. Debian's Ignition relabels what it wrote whenever it finds this
# file's SELINUXTYPE; the initramfs's setfiles is a no-op that says so.
SELINUX=disabled
SELINUXTYPE=none
EOF
# A machine's clock may be years off (a new board, a flat RTC battery): e2fsck must not
# take a superblock time "in the future" for damage before the clock is synchronised.
put /etc/e2fsck.conf 644 <<'EOF'
[options]
	broken_system_clock = 1
EOF
# The kernel's own NIC names (eth0, eth1, ...), as in the cluster file's `interface:`:
# masking udev's default link policy keeps them (a MAC-matched .network file works
# either way). See systemd.net-naming-scheme(7).
mkdir -p "$STAGE/etc/systemd/network"
ln -sfn /dev/null "$STAGE/etc/systemd/network/99-default.link"
# The machine's own /etc/systemd/network/10-slipway.network (from Ignition) configures its
# static address; network-online.target waits for it (slipway-progress.service wants it).
systemctl --root="$STAGE" enable systemd-networkd.service systemd-networkd-wait-online.service >/dev/null 2>&1
# The tree masks module loading for containers; a machine loads overlay and br_netfilter
# (/etc/modules-load.d/slipway-kubernetes.conf) and whatever else its units ask for.
systemctl --root="$STAGE" unmask systemd-modules-load.service >/dev/null 2>&1
# Time: systemd-timesyncd syncs to what Slipway renders (timesyncd.conf.d); it is enabled
# by its package and must not be masked.
[[ -L $STAGE/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service ]] || systemctl --root="$STAGE" enable systemd-timesyncd.service >/dev/null 2>&1
[[ $(readlink "$STAGE/etc/systemd/system/systemd-timesyncd.service" 2>/dev/null) != /dev/null ]] || die "systemd-timesyncd is masked"
# The serial console (a rack machine's serial-over-LAN) gets a login prompt, and root is
# locked: operators come in with the cluster file's SSH keys. Only a rehearsal VM, which
# Slipway's QEMU marks with the SMBIOS product name "slipway-rehearsal", gets a root shell
# there (its checks type into it): a generator decides at each boot, so the same disk
# never gives a real machine's console away.
sed -i -E 's/^root:[^:]*:/root:*:/' "$STAGE/etc/shadow"
grep -q '^root:\*:' "$STAGE/etc/shadow" || die "root is not locked in /etc/shadow"
put /etc/systemd/system-generators/slipway-rehearsal-console 755 <<'EOF'
#!/bin/sh
# Slipway: a root shell on ttyS0 only in a rehearsal VM (SMBIOS product "slipway-rehearsal",
# set by Slipway's QEMU command line); any other machine keeps the login prompt.
[ "$(cat /sys/class/dmi/id/product_name 2>/dev/null)" = slipway-rehearsal ] || exit 0
mkdir -p "$1/serial-getty@ttyS0.service.d"
cat >"$1/serial-getty@ttyS0.service.d/10-slipway-rehearsal-autologin.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 - $TERM
UNIT
EOF
systemctl --root="$STAGE" enable serial-getty@ttyS0.service >/dev/null 2>&1
# The API VIP: Slipway renders haproxy's and keepalived's configs and enables their units
# where it does; the OS carries the programs, disabled (the tree disables them), without
# Debian's sample configs.
rm -f "$STAGE/etc/haproxy/haproxy.cfg" "$STAGE/etc/keepalived/keepalived.conf"
for u in haproxy keepalived; do
  [[ ! -e $STAGE/etc/systemd/system/multi-user.target.wants/$u.service ]] || die "$u is enabled in the image"
done
# Boot work a node has no use for, masked: loading modules for features it has not (DRM,
# EFI pstore) and e2scrub's LVM snapshot clean-up. Under TCG each of these costs a VM's one
# vCPU ~2.5-3 s at boot (systemd-analyze blame). The kernel still loads what a unit asks for
# (modprobe, modules-load.d), so this only skips the eager loading.
systemctl --root="$STAGE" mask modprobe@drm.service modprobe@dm_mod.service modprobe@loop.service \
  modprobe@fuse.service modprobe@configfs.service modprobe@efi_pstore.service systemd-pstore.service \
  e2scrub_reap.service >/dev/null 2>&1
[[ $(readlink "$STAGE/etc/systemd/system/modprobe@drm.service") == /dev/null ]] || die "modprobe@drm was not masked"
# Ignition writes the hostname; this is what a machine shows before it ran.
echo slipway-node | put /etc/hostname 644
put /etc/slipway-os 644 <<EOF
Slipway node OS $OS_NAME $KEY: Debian 12 ($TREE_KEY), kernel $RELEASE ($KERNEL_VERSION)
EOF
[[ -L $STAGE/etc/systemd/system/multi-user.target.wants/systemd-networkd.service ]] || die "systemd-networkd was not enabled"
[[ -x $STAGE/usr/sbin/sshd ]] || die "openssh-server is missing from the image"
step configure

# --- 3. the initramfs images ---------------------------------------------------------------
# load_order NAMES: module paths in load order (dependencies first); builtin ones need nothing
load_order() {
  awk -v want="$1" '
    function base(p,  n, a) { n = split(p, a, "/"); sub(/\.ko$/, "", a[n]); gsub("-", "_", a[n]); return a[n] }
    FILENAME ~ /builtin$/ { builtin[base($1)] = 1; next }
    { sub(":", "", $1); name = base($1); path[name] = $1; dep[name] = ""
      for (i = 2; i <= NF; i++) dep[name] = dep[name] " " base($i) }
    function visit(m,   d, k, j) {
      if (m in seen || m in builtin) return
      if (!(m in path)) { print "MISSING " m; return }
      seen[m] = 1; k = split(dep[m], d, " "); for (j = 1; j <= k; j++) visit(d[j]); print path[m] }
    END { n = split(want, w, " "); for (i = 1; i <= n; i++) visit(w[i]) }' "$MODDIR/modules.builtin" "$MODDIR/modules.dep"
}
add_modules() { # add_modules NAMES: copy them (flat) and append to load.order
  local order ko
  order=$(load_order "$1")
  if grep -q '^MISSING' <<<"$order"; then die "kernel modules not found in $MODDIR: $(grep '^MISSING' <<<"$order" | tr '\n' ' ')"; fi
  for ko in $order; do
    [[ $ko == *.ko ]] || die "$ko is compressed; busybox insmod needs plain .ko files"
    [[ -e $INITRD/lib/modules/$(basename "$ko") ]] && continue
    cp "$MODDIR/$ko" "$INITRD/lib/modules/"
    basename "$ko" >>"$INITRD/lib/modules/load.order"
  done
}
add_binary() { # add_binary PATH: the program and the shared libraries ldd names
  local lib
  mkdir -p "$INITRD$(dirname "$1")"
  cp "$1" "$INITRD$1"
  for lib in $(ldd "$1" | awk '/=> \// { print $3 } /^[ \t]*\/[^ ]+ \(/ { print $1 }'); do
    [[ -e $INITRD$lib ]] && continue
    mkdir -p "$INITRD$(dirname "$lib")"
    cp -L "$lib" "$INITRD$lib"
  done
}
# sorted names, owner root, fixed mtimes, gzip -n: the same inputs give the same bytes
pack() { (cd "$INITRD" && find . -print0 | LC_ALL=C sort -z | cpio --null --reproducible -o -H newc -R 0:0 --quiet | gzip -n -6 >"$1"); }

log "initramfs: busybox, storage modules (the disk's), + NIC modules, firmware, Ignition, installer tools"
mkdir -p "$INITRD"/{bin,sbin,dev,proc,sys,run,tmp,etc,usr/bin,usr/sbin,lib/modules,sysroot}
cp /bin/busybox "$INITRD/bin/busybox"
for a in $("$INITRD/bin/busybox" --list); do
  [[ $a == busybox || -e $INITRD/bin/$a ]] || ln -s busybox "$INITRD/bin/$a"
done
install -m 0755 "$FILES/init" "$INITRD/init"
install -m 0755 "$FILES/udhcpc.script" "$INITRD/etc/udhcpc.script"
cp "$STAGE/etc/e2fsck.conf" "$INITRD/etc/e2fsck.conf"
: >"$INITRD/lib/modules/load.order"
add_modules "${STORAGE_MODULES[*]}"
mknod -m 600 "$INITRD/dev/console" c 5 1
# The disk's own copy boots the installed system only (its command line has no install or
# first-boot flag): disks and file systems, no NICs, no Ignition, so SYSLINUX reads a few
# MB through the firmware's disk calls (seconds, under TCG) instead of the installer's.
pack "$WORK/initrd-disk.img"
initrd_disk_modules=$(tr '\n' ' ' <"$INITRD/lib/modules/load.order")

add_modules "${NIC_MODULES[*]}"
initrd_mods=$(cd "$MODDIR" && for m in $(cat "$INITRD/lib/modules/load.order"); do grep -o "^[^:]*/$m" modules.dep; done)
initrd_fw=$(firmware_for $initrd_mods)
initrd_fw_missing=$(copy_firmware "$INITRD/lib/firmware" "$initrd_fw")
install -m 0755 "$FILES/setfiles" "$INITRD/usr/sbin/setfiles"
add_binary "$IGNITION_BIN"
mv "$INITRD$IGNITION_BIN" "$INITRD/usr/bin/ignition"
for t in "${INSTALLER_TOOLS[@]}"; do add_binary "$t"; done
# the enlistment's modules: beside the others, in their own order file (init loads them only to enlist)
for ko in $(load_order "${ENLIST_MODULES[*]}"); do
  [[ $ko == MISSING* ]] && die "kernel module $ko not found in $MODDIR"
  [[ -e $INITRD/lib/modules/$(basename "$ko") ]] || cp "$MODDIR/$ko" "$INITRD/lib/modules/"
  basename "$ko" >>"$INITRD/lib/modules/enlist.order"
done
pack "$WORK/out/initrd.img"
cp "$TREE/boot/vmlinuz-$RELEASE" "$WORK/out/vmlinuz"
step initramfs

# --- 4. the boot partition: SYSLINUX (BIOS) and syslinux.efi (UEFI), kernel, initramfs ---
log "boot partition (FAT, SYSLINUX)"
cmdline="root=LABEL=ROOT rw console=tty0 console=ttyS0,115200n8"
cat >"$WORK/syslinux.cfg" <<EOF
# Slipway node OS: boot the installed system from this disk (no ignition.firstboot, no
# slipway.install: the initramfs mounts ROOT and starts its systemd).
SERIAL 0 115200
DEFAULT slipway
PROMPT 0
TIMEOUT 0
SAY SYSLINUX: booting the installed Slipway system from disk
LABEL slipway
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND $cmdline
EOF
mkfs.fat -C -n BOOT -i "${KEY:8:8}" "$WORK/boot.img" $((BOOT_MB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mcopy -i "$WORK/boot.img" "$WORK/out/vmlinuz" "$WORK/syslinux.cfg" ::/
mcopy -i "$WORK/boot.img" "$WORK/initrd-disk.img" ::/initrd.img
# the mtools installer: writes ldlinux.sys + ldlinux.c32 and the FAT boot sector
syslinux --install "$WORK/boot.img"
mmd -i "$WORK/boot.img" ::/EFI ::/EFI/BOOT
mcopy -i "$WORK/boot.img" "$SYSLINUX_EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$WORK/boot.img" "$SYSLINUX_EFI_MODULES/ldlinux.e64" "$WORK/syslinux.cfg" ::/EFI/BOOT/
step boot-partition

# --- 5. the disk: MBR boot code, partition table, both file systems at their offsets --
content_mb=$(du -sm "$STAGE" | cut -f1)
ROOT_MB=$(( (content_mb * (100 + ROOT_MARGIN_PERCENT) / 100 + ROOT_MARGIN_MB + 63) / 64 * 64 ))
log "disk.img: mkfs.ext4 ROOT (${ROOT_MB} MiB for ${content_mb} MB) at its partition's offset"
boot_start=2048                                      # 1 MiB, in 512-byte sectors
root_start=$((boot_start + BOOT_MB * 2048))
total=$((root_start + ROOT_MB * 2048))
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
# -E offset: the file system starts at the partition, inside the disk file; -d: its contents
# come from the staged directory (no mount, no loop device). resize=: room in the group
# descriptor table for the installer to grow it to a 2 TiB disk (the MBR's limit).
# SOURCE_DATE_EPOCH-free: the file system's times are the build's; e2fsck.conf above
# tolerates a clock behind them.
mkfs.ext4 -q -F -L ROOT -U "$uuid" -E offset=$((root_start * 512)),root_owner=0:0,resize=$((2 * 1024 * 1024 * 256)) \
  -d "$STAGE" "$WORK/disk.img" "${ROOT_MB}M"
e2fsck -fn "$WORK/disk.img?offset=$((root_start * 512))" >"$WORK/fsck.log" 2>&1 \
  || { cat "$WORK/fsck.log" >&2; die "the new ROOT file system does not check clean"; }
raw_size=$(stat -c %s "$WORK/disk.img")
raw_sha=$(sha256sum "$WORK/disk.img" | cut -c1-64)
step disk

log "disk.img.zst (zstd -$ZSTD_LEVEL)"
zstd -q -T0 -"$ZSTD_LEVEL" --rm "$WORK/disk.img" -o "$WORK/out/disk.img.zst"
step compress

# --- 6. the manifests ----------------------------------------------------------------------
total_ms=$(( $(now_ms) - started ))
jstr() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
jlist() { # jlist WORDS...: a JSON array of strings
  local first=1 w; printf '['
  for w in "$@"; do (( first )) || printf ', '; first=0; jstr "$w"; done
  printf ']'
}
fileinfo() { printf '{"file": "%s", "sha256": "%s", "size": %d' "$1" "$(sha256sum "$WORK/out/$1" | cut -c1-64)" "$(stat -c %s "$WORK/out/$1")"; }
mod_names() { local m; for m in "$@"; do m=${m##*/}; echo "${m%.ko}"; done | LC_ALL=C sort -u; }
built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
{
  echo '{'
  echo "  \"name\": \"$OS_NAME\","
  echo "  \"version\": \"$KEY\","
  echo "  \"builtAt\": \"$built_at\","
  echo "  \"kernel\": $(fileinfo vmlinuz), \"release\": \"$RELEASE\", \"package\": \"linux-image-$RELEASE $KERNEL_VERSION\"},"
  echo "  \"initrd\": $(fileinfo initrd.img)},"
  echo "  \"disk\": $(fileinfo disk.img.zst), \"rawSize\": $raw_size, \"rawSha256\": \"$raw_sha\", \"bootMiB\": $BOOT_MB, \"rootMiB\": $ROOT_MB, \"rootContentMB\": $content_mb, \"layout\": \"mbr: p1 fat32 BOOT (syslinux bios + efi), p2 ext4 ROOT\"},"
  echo "  \"kernelCmdline\": $(jstr "$cmdline"),"
  printf '  "packages": ['
  chroot "$STAGE" dpkg-query -W -f '${Package}\t${Version}\n' | LC_ALL=C sort | awk -F'\t' '{ printf "%s{\"name\": \"%s\", \"version\": \"%s\"}", (NR > 1 ? ", " : ""), $1, $2 }'
  echo '],'
  echo "  \"modules\": {"
  echo "    \"initrd\": $(jlist $(mod_names $initrd_mods)),"
  echo "    \"enlist\": $(jlist $(mod_names $(cat "$INITRD/lib/modules/enlist.order"))),"
  echo "    \"disk-initrd\": $(jlist $(mod_names $initrd_disk_modules)),"
  echo "    \"root\": $(jlist $(mod_names $root_mods))"
  echo "  },"
  echo "  \"firmware\": {"
  echo "    \"initrd\": $(jlist $(comm -23 <(printf '%s\n' $initrd_fw) <(printf '%s\n' $initrd_fw_missing | LC_ALL=C sort))),"
  echo "    \"initrdMissing\": $(jlist $initrd_fw_missing),"
  echo "    \"root\": $(jlist $(comm -23 <(printf '%s\n' $root_fw) <(printf '%s\n' $root_fw_missing | LC_ALL=C sort))),"
  echo "    \"rootMissing\": $(jlist $root_fw_missing)"
  echo "  },"
  echo "  \"inputs\": {"
  echo "    \"tree\": $(jstr "$TREE_KEY"), \"mirror\": $(jstr "$(sed -n 's/^mirror=//p' "$(dirname "$TREE")/MANIFEST")"), \"components\": $(jstr "$(sed -n 's/^components=//p' "$(dirname "$TREE")/MANIFEST")"),"
  echo "    \"ignition\": $(jstr "$("$IGNITION_BIN" -version 2>&1 | head -n1)"),"
  echo "    \"busybox\": $(jstr "$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null)"),"
  echo "    \"syslinux\": $(jstr "$(dpkg-query -W -f '${Version}' syslinux 2>/dev/null)"),"
  echo "    \"installerTools\": $(jlist $(for t in "${INSTALLER_TOOLS[@]}"; do pkg=$(dpkg -S "$t" 2>/dev/null || dpkg -S "${t#/usr}" 2>/dev/null); echo "$(basename "$t")=${pkg%%:*}=$(dpkg-query -W -f '${Version}' "${pkg%%:*}" 2>/dev/null)"; done)),"
  echo "    \"script\": \"$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-64)\""
  echo "  },"
  echo "  \"buildSeconds\": {$(IFS=,; echo "${json_timings[*]}" | sed 's/,/, /g'), \"total\": $(secs $total_ms)}"
  echo '}'
} >"$WORK/out/os.json"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$WORK/out/os.json" 2>/dev/null \
  || { command -v python3 >/dev/null && die "os.json is not valid JSON"; true; }
{
  echo "$OS_NAME $KEY, built $built_at in $(secs $total_ms) s (${timings[*]})"
  echo "tree=$TREE"
  echo "kernel=$RELEASE linux-image $KERNEL_VERSION (the tree's own)"
  echo "ignition=$("$IGNITION_BIN" -version 2>&1 | head -n1)"
  echo "initrd_modules=$(mod_names $initrd_mods | wc -l) ($(tr '\n' ' ' <"$INITRD/lib/modules/load.order"))"
  echo "initrd_firmware=$(printf '%s\n' $initrd_fw | sed '/^$/d' | wc -l) named, missing: ${initrd_fw_missing:-none}" | tr '\n' ' '; echo
  echo "root_modules=$(wc -w <<<"$root_mods") ($(cd "$STAGE/usr/lib/modules/$RELEASE" && du -sm . | cut -f1) MB)"
  echo "root_firmware_missing=$(wc -w <<<"$root_fw_missing")"
  echo "root_content_mb=$content_mb root_partition_mb=$ROOT_MB"
  echo "packages=$(chroot "$STAGE" dpkg-query -W -f '.\n' | wc -l)"
  echo "kernel_cmdline_disk_boot=$cmdline"
  echo "sizes:"
  echo "  initrd.img on the disk (storage only) $(du -k --apparent-size "$WORK/initrd-disk.img" | cut -f1)K"
  for f in vmlinuz initrd.img disk.img.zst; do echo "  $f $(stat -c %s "$WORK/out/$f") bytes"; done
  echo "  disk raw $raw_size bytes, sha256 $raw_sha"
} >"$WORK/out/MANIFEST"
# one rename: nobody sees a half-written image
mv "$WORK/out" "$OUT"
touch "$OUT/.complete"
# Every changed input makes a new key: images nobody used for two weeks go (a warm run
# touches its directory).
find "$CACHE" -mindepth 1 -maxdepth 1 -type d -name '[0-9a-f]*' -mtime +14 ! -path "$OUT" -exec rm -rf {} + 2>/dev/null || true
log "built $OUT in $(secs $total_ms)s (${timings[*]})"
copy_out
