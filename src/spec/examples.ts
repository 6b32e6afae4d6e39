// The commented examples `slipway init` prints. `ha` is guide 02's shape: three
// control-plane + etcd machines behind a keepalived VIP, and two workers.
import { NEWEST_VERSION } from '../catalog/versions.ts';

const header = (name: string) => `# Slipway cluster file. Check it with: slipway validate -f <this file>
# Every field is documented in the README ("Cluster file reference").
apiVersion: slipway.dev/v1alpha1
kind: Cluster
metadata:
  name: ${name}                        # DNS-1123 label
spec:
  kubernetesVersion: ${NEWEST_VERSION}        # v1.20.x .. ${NEWEST_VERSION}
`;

const provisioner = `  network:
    serviceCIDR: 10.96.0.0/12       # first IP = kubernetes service, 10th = cluster DNS
    podCIDR: 10.244.0.0/16          # flannel vxlan network
    dnsDomain: cluster.local
    cni: flannel
  provisioner:                      # the machine running \`slipway serve\`
    address: 10.20.30.2
    httpPort: 8080
    dhcp:
      mode: full                    # full | proxy (beside an existing DHCP server) | off
      subnet: 10.20.30.0/24
      router: 10.20.30.1
      dns: [10.20.30.1]
  pki:
    keyAlgorithm: ecdsa-p256        # ecdsa-p256 | rsa-2048
  ssh:
    authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJbGMd8yq0N2Lw7AfJbqUnLk4Y8pQ1r9Pz7aS0xq3aBc ops@example"]
`;

export const EXAMPLES = {
  single: `${header('lab')}  controlPlane:
    port: 6443                      # one control-plane machine: clients use its IP
${provisioner}  machines:
    - name: cp1
      mac: "52:54:00:20:30:11"
      ip: 10.20.30.11/24
      roles: [control-plane, etcd, worker]
`,
  ha: `${header('lab')}  controlPlane:
    endpoint: k8s-api.lab.local     # DNS name in certificates, kubeconfigs and /etc/hosts
    vip: 10.20.30.10                # keepalived moves it between the control-plane machines
    port: 6443                      # haproxy on the VIP balances the apiservers
${provisioner}  machines:
    - name: cp1
      mac: "52:54:00:20:30:11"
      ip: 10.20.30.11/24
      interface: eth0               # NIC name: keepalived binds the VIP to it
      roles: [control-plane, etcd]  # any of: control-plane, etcd, worker
    - name: cp2
      mac: "52:54:00:20:30:12"
      ip: 10.20.30.12/24
      interface: eth0
      roles: [control-plane, etcd]
    - name: cp3
      mac: "52:54:00:20:30:13"
      ip: 10.20.30.13/24
      interface: eth0
      roles: [control-plane, etcd]
    - name: w1
      mac: "52:54:00:20:30:21"
      ip: 10.20.30.21/24
      roles: [worker]
    - name: w2
      mac: "52:54:00:20:30:22"
      ip: 10.20.30.22/24
      roles: [worker]
`,
} as const;
export type ExampleShape = keyof typeof EXAMPLES;
