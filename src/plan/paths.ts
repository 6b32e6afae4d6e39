// Where things live on a machine. One place, so units, kubeconfigs and the PKI agree.
export const BIN = '/opt/bin'; // outside /usr, which the OS's packages own
export const K8S = '/etc/kubernetes';
export const PKI = '/etc/kubernetes/pki';
export const ETCD_PKI = '/etc/kubernetes/pki/etcd';
export const UNITS = '/etc/systemd/system';
/** The OS's own units (Debian's packages put them here). */
export const OS_UNITS = '/lib/systemd/system';
/** Reached once the clock is synchronised (systemd-time-wait-sync): etcd and Kubernetes start after it, their TLS needs a right clock. */
export const TIME_SYNC = 'time-sync.target';
export const ADDONS = '/etc/kubernetes/addons';
export const SLIPWAY = '/etc/slipway';
export const KUBELET_DIR = '/var/lib/kubelet';
export const CONTAINERD_SOCK = 'unix:///run/containerd/containerd.sock';
/** the port every apiserver binds on its own machine IP; haproxy owns <vip>:<controlPlane.port> */
export const APISERVER_PORT = 6443;
/** Written by the kubelet once its bootstrap CSR is approved and signed: the node has joined. */
export const KUBELET_CLIENT_CERT = '/var/lib/kubelet/pki/kubelet-client-current.pem';
