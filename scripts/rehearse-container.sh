#!/usr/bin/env bash
# Feasibility proof for the containers rehearsal: boot ONE rendered Slipway machine as a
# systemd-nspawn container (systemd as PID 1) from the cached Debian tree, inside its own
# network namespace holding the machine's address, and bring up its etcd and the real
# v1.20 kube-apiserver from the rendered units. Then tear everything down.
#
#   scripts/rehearse-container.sh [--full] [MACHINE]   (default cp1 of examples/lab.yaml)
#
# --full boots every rendered unit but flanneld (no flannel binary offline): haproxy and
# keepalived (the VIP), controller-manager, scheduler, add-ons, containerd, kubelet (TLS
# bootstrap through the VIP), kube-proxy; imports a locally built pause image and waits
# for the node to be Ready and a static hostNetwork pod to run under kubelet + containerd
# + runc. Needs the rehearsal-only overrides listed at "full mode" below.
#
# Environment: KEEP=1 leaves the run dir (logs, overlay upper dir) in /var/tmp.
# Never touches the root namespace's links, addresses or routes: the only network change
# is `ip netns add` + links created inside that namespace, deleted on exit.
set -euo pipefail

FULL=0
if [[ ${1:-} == --full ]]; then FULL=1; shift; fi
MACHINE=${1:-cp1}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE=$REPO/node_modules/.bin/node
[[ -x $NODE ]] || NODE=node
BOOT_TIMEOUT=120   # seconds for systemd to reach a steady state
API_TIMEOUT=180    # seconds for etcd + kube-apiserver /readyz
POD_TIMEOUT=240    # --full: seconds for node Ready + the probe pod Running

log() { echo "rehearse-container: $*" >&2; }
die() { log "error: $*"; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root"
command -v systemd-nspawn >/dev/null || {
  log "installing systemd-container (systemd-nspawn)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd-container >/dev/null
}

BIN=$("$REPO/scripts/build-kubernetes.sh" v1.20.2 | tail -1)
TREE=$("$REPO/scripts/build-rehearsal-tree.sh" | tail -1)

# --full: a pause image built here (no registry offline), cached like the rest.
IMAGES=${SLIPWAY_CACHE:-/var/cache/slipway}/images
pause_image() {
  local out=$IMAGES/pause-local.tar
  [[ -f $out ]] && return 0
  local t
  t=$(mktemp -d)
  mkdir -p "$t/rootfs" "$t/img" "$IMAGES"
  (cd "$REPO/src/rehearse/containers/pause" && GO111MODULE=off CGO_ENABLED=0 GOCACHE=$IMAGES/.gocache \
    /usr/lib/go-1.19/bin/go build -trimpath -ldflags '-s -w' -o "$t/rootfs/pause" pause.go)
  # A docker-archive (what `ctr images import` reads): one layer, a config, a manifest.
  tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$t/rootfs" -cf "$t/layer.tar" pause
  local l c
  l=$(sha256sum "$t/layer.tar" | cut -d' ' -f1)
  mkdir "$t/img/$l" && mv "$t/layer.tar" "$t/img/$l/layer.tar"
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$l" > "$t/cfg.json"
  c=$(sha256sum "$t/cfg.json" | cut -d' ' -f1)
  mv "$t/cfg.json" "$t/img/$c.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$c" "$PAUSE_REF" "$l" > "$t/img/manifest.json"
  tar --owner=0 --group=0 --mtime=@0 -C "$t/img" -cf "$out.partial" .
  mv "$out.partial" "$out"
  rm -rf "$t"
}

RUN=$(mktemp -d /var/tmp/slipway-rehearsal.XXXXXX)
NS=slipway-rh-$MACHINE-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
MERGED=$RUN/merged
NSPAWN_PID=
MOUNTED=0

cleanup() {
  set +e
  if [[ -n $NSPAWN_PID ]] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
    # SIGTERM makes nspawn ask the container's systemd to power off; bounded, then KILL.
    kill -TERM "$NSPAWN_PID"
    for _ in $(seq 60); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$NSPAWN_PID" 2>/dev/null && { log "nspawn did not stop in 30 s: SIGKILL"; kill -KILL "$NSPAWN_PID"; sleep 1; }
  fi
  ((MOUNTED)) && { umount "$MERGED" 2>/dev/null || umount -l "$MERGED"; }
  ip netns del "$NS" 2>/dev/null
  if [[ ${KEEP:-} == 1 ]]; then log "kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT

# --- render the machine (the cluster file says v1.20.2: the binaries we have) ---------
sed 's/kubernetesVersion: v[^ ]*/kubernetesVersion: v1.20.2/' "$REPO/examples/lab.yaml" > "$RUN/lab.yaml"
"$NODE" "$REPO/bin/slipway.js" render -f "$RUN/lab.yaml" -o "$RUN/out" --state "$RUN/state" >/dev/null
ROOTFILES=$RUN/out/machines/$MACHINE/root
[[ -d $ROOTFILES ]] || die "no machine $MACHINE in the render"
IP=$(sed -n 's/^ *--advertise-address=\([0-9.]*\).*/\1/p' "$ROOTFILES/etc/systemd/system/kube-apiserver.service")
[[ -n $IP ]] || die "$MACHINE has no kube-apiserver unit (pick a control-plane machine)"

# --- its own network namespace, with the machine's address and a default route --------
ip netns add "$NS"
ip -n "$NS" link set lo up
# A dummy link where the kernel has the driver, else a veth pair kept inside the
# namespace (its peer up, so eth0 has carrier): this host's kernel has no dummy.
if ! ip -n "$NS" link add eth0 type dummy 2>/dev/null; then
  ip -n "$NS" link add eth0 type veth peer name eth0p
  ip -n "$NS" link set eth0p up
fi
ip -n "$NS" addr add "$IP/24" dev eth0
ip -n "$NS" link set eth0 up
# kubelet/kube-proxy pick the node IP from the default route; the apiserver likes one too.
ip -n "$NS" route add default dev eth0

# --- root: cached tree read-only below, this run's changes in an overlay upper dir ---
mkdir -p "$RUN/upper" "$RUN/work" "$MERGED" "$RUN/containerd"
mount -t overlay overlay -o "lowerdir=$TREE,upperdir=$RUN/upper,workdir=$RUN/work" "$MERGED"
MOUNTED=1
# The machine's rendered files, as Ignition would lay them down.
cp -a "$ROOTFILES/." "$MERGED/"
echo "$MACHINE" > "$MERGED/etc/hostname"
# Binaries: Slipway's units run /opt/bin/*; the cached Kubernetes build is bound at
# /opt/k8s, etcd comes from the tree's etcd-server package.
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  ln -sf "/opt/k8s/$b" "$MERGED/opt/bin/$b"
done
ln -sf /usr/bin/etcd "$MERGED/opt/bin/etcd"
ln -sf /usr/bin/etcdctl "$MERGED/opt/bin/etcdctl"
# No provisioner here: the binaries are already in place.
mkdir -p "$MERGED/etc/systemd/system/slipway-binaries.service.d"
printf '[Service]\nExecStart=\nExecStart=/bin/true\n' > "$MERGED/etc/systemd/system/slipway-binaries.service.d/rehearsal.conf"
if ((!FULL)); then
  # This proof starts etcd and the apiserver only: drop every other rendered unit from
  # multi-user.target.
  for w in "$MERGED"/etc/systemd/system/multi-user.target.wants/*; do
    case $(basename "$w") in etcd.service|kube-apiserver.service|slipway-binaries.service) ;; *) rm -f "$w" ;; esac
  done
else
  # --- full mode: every rendered unit, plus what a container (not a machine) needs ----
  PAUSE_REF=$(sed -n 's/^ *sandbox_image = "\(.*\)"/\1/p' "$MERGED/etc/containerd/config.toml")
  [[ -n $PAUSE_REF ]] || die "no sandbox_image in the rendered containerd config"
  pause_image
  # No flannel binary offline: its unit stays off (pods here use the host network).
  rm -f "$MERGED/etc/systemd/system/multi-user.target.wants/flanneld.service"
  # The tree disables Debian's haproxy/keepalived; the machine enables them if it has
  # their rendered configs (control-plane machines with a VIP).
  [[ -f $MERGED/etc/haproxy/haproxy.cfg ]] && ln -sf /lib/systemd/system/haproxy.service "$MERGED/etc/systemd/system/multi-user.target.wants/"
  [[ -f $MERGED/etc/keepalived/keepalived.conf ]] && ln -sf /lib/systemd/system/keepalived.service "$MERGED/etc/systemd/system/multi-user.target.wants/"
  # containerd: no cgroup controllers inside (the host's are all on its v1 hierarchies),
  # so no cgroups for pods; and no CAP_SYS_RESOURCE (this host's bounding set lacks it),
  # so runc cannot set the sandbox's oom_score_adj=-998 ("can't get final child's PID
  # from pipe: EOF") unless the CRI clamps it to containerd's own.
  sed -i 's/SystemdCgroup = true/SystemdCgroup = false/; s/^\(\[plugins."io.containerd.grpc.v1.cri"\]\)$/\1\n  disable_cgroup = true\n  restrict_oom_score_adj = true/' \
    "$MERGED/etc/containerd/config.toml"
  mkdir -p "$MERGED/etc/systemd/system/containerd.service.d"
  printf '[Service]\nExecStartPost=/usr/bin/ctr -n k8s.io images import /opt/images/pause-local.tar\n' \
    > "$MERGED/etc/systemd/system/containerd.service.d/rehearsal.conf"
  # kubelet: the cgroupfs driver, no QoS/pod cgroups, nothing to enforce allocatable on.
  sed -i 's/^cgroupDriver: systemd/cgroupDriver: cgroupfs/' "$MERGED/var/lib/kubelet/config.yaml"
  printf 'cgroupsPerQOS: false\nenforceNodeAllocatable: []\n' >> "$MERGED/var/lib/kubelet/config.yaml"
  # kubelet's OOM watcher opens /dev/kmsg, which a container does not have.
  echo 'L /dev/kmsg - - - - /dev/console' > "$MERGED/etc/tmpfiles.d/slipway-kmsg.conf"
  # kube-proxy: nf_conntrack_max is host-wide, not writable from a network namespace.
  printf 'conntrack:\n  maxPerCore: 0\n' >> "$MERGED/var/lib/kube-proxy/config.yaml"
  # A static pod on the host network: proves kubelet + containerd + runc run pods here.
  mkdir -p "$MERGED/etc/kubernetes/manifests"
  printf '%s\n' 'apiVersion: v1' 'kind: Pod' 'metadata: {name: rehearsal-probe, namespace: kube-system}' \
    'spec:' '  hostNetwork: true' '  containers:' "  - {name: probe, image: \"$PAUSE_REF\", imagePullPolicy: Never}" \
    > "$MERGED/etc/kubernetes/manifests/rehearsal-probe.yaml"
fi
# etcd alone cannot reach quorum with its two rendered peers absent: one-member cluster.
sed -i "s|--initial-cluster=[^ ]*|--initial-cluster=$MACHINE=https://$IP:2380|" "$MERGED/etc/systemd/system/etcd.service"

# --- boot ----------------------------------------------------------------------------
# Why each option (measured on this host: cgroup v1, PID 1 is not systemd):
#  --register=no --keep-unit     no systemd-machined/systemd on the host to register with
#  --network-namespace-path      the namespace made above; nspawn never touches the host's
#  --capability=CAP_NET_ADMIN    keepalived (VIP) and kube-proxy (iptables) need it
#  --system-call-filter=...      containerd/runc/kubelet use keyrings, bpf, perf_event_open
#  UNIFIED_HIERARCHY=1           a cgroup2 hierarchy inside, which the container's systemd,
#                                kubelet and runc can drive on a cgroup v1 host
#  API_VFS_WRITABLE=1            writable /proc/sys, /sys for kubelet/kube-proxy sysctls
#  --bind-ro                     the cached Kubernetes binaries
#  --console=passive             no terminal in CI; logs go to the container's journal
#  --bind (--full)               /var/lib/containerd off the overlay; the pause image
NSPAWN=(systemd-nspawn --quiet --boot --directory="$MERGED" --machine="$MACHINE" --hostname="$MACHINE"
  --register=no --keep-unit --network-namespace-path="/run/netns/$NS"
  --capability=CAP_NET_ADMIN --system-call-filter='add_key keyctl request_key bpf perf_event_open'
  --bind-ro="$BIN:/opt/k8s" --console=passive)
# containerd's overlayfs snapshotter cannot stack on the container's overlayfs root:
# its state goes on a plain directory of the host's filesystem.
((FULL)) && NSPAWN+=(--bind="$RUN/containerd:/var/lib/containerd" --bind-ro="$IMAGES:/opt/images")
log "booting: SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 SYSTEMD_NSPAWN_API_VFS_WRITABLE=1 ${NSPAWN[*]}"
started=$(date +%s)
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 SYSTEMD_NSPAWN_API_VFS_WRITABLE=1 "${NSPAWN[@]}" >"$RUN/nspawn.log" 2>&1 &
NSPAWN_PID=$!

# The container's PID 1, seen from here: the process in the new PID namespace whose
# command is systemd, under nspawn.
LEADER=
for _ in $(seq $((BOOT_TIMEOUT * 2))); do
  kill -0 "$NSPAWN_PID" 2>/dev/null || { cat "$RUN/nspawn.log" >&2; die "nspawn exited"; }
  for p in $(pgrep -P "$NSPAWN_PID" || true); do
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == systemd ]] && LEADER=$p
  done
  [[ -n $LEADER ]] && break
  sleep 0.5
done
[[ -n $LEADER ]] || die "no systemd inside after ${BOOT_TIMEOUT}s"
inside() { nsenter --target "$LEADER" --all -- "$@"; }

state=
for _ in $(seq "$BOOT_TIMEOUT"); do
  state=$(inside systemctl is-system-running 2>/dev/null || true)
  [[ $state == running || $state == degraded ]] && break
  sleep 1
done
log "systemd in the container: ${state:-unknown} after $(( $(date +%s) - started ))s (PID 1 is host PID $LEADER)"
[[ $state == running || $state == degraded ]] || { inside systemctl list-jobs >&2 || true; die "systemd did not finish booting"; }
[[ $state == degraded ]] && inside systemctl --failed --no-legend >&2

ADMIN=$RUN/out/machines/$MACHINE/root/etc/kubernetes/admin.conf
ready=0
for _ in $(seq $((API_TIMEOUT / 2))); do
  if [[ $(ip netns exec "$NS" "$BIN/kubectl" --kubeconfig="$ADMIN" --request-timeout=3s get --raw /readyz 2>/dev/null) == ok ]]; then ready=1; break; fi
  sleep 2
done
if ((!ready)); then
  inside systemctl status etcd kube-apiserver --no-pager -l >&2 || true
  inside journalctl -u etcd -u kube-apiserver --no-pager -n 60 >&2 || true
  die "kube-apiserver not ready after ${API_TIMEOUT}s"
fi
log "kube-apiserver /readyz ok $(( $(date +%s) - started ))s after boot started"

KUBECTL=(ip netns exec "$NS" "$BIN/kubectl" --kubeconfig="$ADMIN" --request-timeout=5s)
if ((FULL)); then
  ok=0
  for _ in $(seq $((POD_TIMEOUT / 3))); do
    node=$("${KUBECTL[@]}" get node "$MACHINE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
    pod=$("${KUBECTL[@]}" -n kube-system get pod "rehearsal-probe-$MACHINE" -o 'jsonpath={.status.phase}' 2>/dev/null || true)
    [[ $node == True && $pod == Running ]] && { ok=1; break; }
    sleep 3
  done
  if ((!ok)); then
    inside systemctl --failed --no-legend >&2 || true
    inside journalctl -u kubelet -u containerd -u kube-proxy --no-pager -n 80 >&2 || true
    die "node $MACHINE Ready=${node:-?}, probe pod ${pod:-absent} after ${POD_TIMEOUT}s"
  fi
  log "node $MACHINE Ready and its probe pod Running $(( $(date +%s) - started ))s after boot started"
fi

# Evidence, on stdout.
echo "== inside $MACHINE: systemd, units, the processes"
inside systemctl is-system-running || true
inside systemctl --no-pager --no-legend list-units 'etcd.service' 'kube-*.service' 'kubelet.service' 'containerd.service' 'haproxy.service' 'keepalived.service'
inside ps -o pid,comm,args -C etcd,kube-apiserver,kubelet,containerd,haproxy,keepalived --no-headers | cut -c1-120
echo "== cgroup inside"
inside cat /proc/1/cgroup
echo "== from the network namespace $NS (kubectl with the rendered admin.conf)"
ip netns exec "$NS" "$BIN/kubectl" --kubeconfig="$ADMIN" version --short 2>/dev/null || true
ip netns exec "$NS" "$BIN/kubectl" --kubeconfig="$ADMIN" get --raw '/readyz?verbose' | tail -3
"${KUBECTL[@]}" get namespaces
if ((FULL)); then
  "${KUBECTL[@]}" get nodes -o wide
  "${KUBECTL[@]}" get pods -A -o wide
  "${KUBECTL[@]}" get csr
  echo "== VIP (keepalived) and the containers under containerd"
  ip -n "$NS" -4 addr show dev eth0 | grep inet
  inside ctr -n k8s.io tasks ls
fi
inside etcdctl --endpoints="https://$IP:2379" --cacert=/etc/kubernetes/pki/etcd/ca.crt \
  --cert=/etc/kubernetes/pki/apiserver-etcd-client.crt --key=/etc/kubernetes/pki/apiserver-etcd-client.key endpoint health
echo "rehearse-container: OK ($MACHINE booted systemd and served the v1.20 API$( ((FULL)) && echo ', node Ready, pod Running') in $(( $(date +%s) - started ))s)"
