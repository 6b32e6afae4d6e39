// The cluster file's shape, written once as TypeBox: it is both the JSON Schema that
// `slipway schema` prints (for editors) and the validator the parser runs (via Ajv).
// Semantic rules that JSON Schema cannot express live in validate.ts.
import { Type, type Static, type TUnsafe } from '@sinclair/typebox';
import { KNOWN_VERSIONS, NEWEST_VERSION } from '../catalog/versions.ts';
import { CNIS, ROLES } from '../catalog/cluster.ts';
import { OS_CHOICES } from '../catalog/os.ts';

const IPv4 = Type.String({ format: 'ipv4', description: 'IPv4 address, e.g. 10.20.30.2' });
const CIDR = Type.String({
  pattern: '^\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2}$',
  description: 'IPv4 network in CIDR notation, e.g. 10.244.0.0/16',
});
const Port = Type.Integer({ minimum: 1, maximum: 65535 });

// Every string that reaches a rendered file is held to what its consumer accepts, here,
// so `validate` says so with the line; the writers in plan/ refuse it again (plan/guard.ts).
/** Linux interface names (dev_valid_name: at most 15 bytes, no '/', ':' or whitespace, not "." or ".."); what networkd's Name=, keepalived and dnsmasq take. */
export const IFNAME_PATTERN = '^(?!\\.{1,2}$)[A-Za-z0-9_.-]{1,15}$';
const IfName = (description: string) => Type.String({ pattern: IFNAME_PATTERN, description: `${description}: a Linux interface name, 1-15 letters, digits, "-", "_" or "." (e.g. eno1)` });
/** A device path under /dev, one path segment at a time, none of them "." or "..". */
export const DISK_PATTERN = '^/dev(/(?!\\.{1,2}(/|$))[A-Za-z0-9._:+@=,-]+)+$';
/** Kubernetes label keys: an optional DNS-subdomain prefix and "/", then a name of at most 63 characters. */
export const LABEL_KEY_PATTERN = '^((?=[a-z0-9.-]{1,253}/)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$';
/** Kubernetes label values: empty, or at most 63 characters, alphanumeric at both ends. */
export const LABEL_VALUE_PATTERN = '^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$';
/** One line of printable text: no control characters (a newline would start another line of authorized_keys). */
export const ONE_LINE_PATTERN = '^[^\\u0000-\\u001f\\u007f]+$';
/** An NTP server as timesyncd's NTP= takes it: an IPv4 address or a DNS name (space-separated list, so no spaces). */
export const NTP_SERVER_PATTERN = '^(\\d{1,3}(\\.\\d{1,3}){3}|[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*)$';
/** Certificates' days: X.509 dates end in 9999, and a century is more than any cluster needs. */
export const MAX_VALIDITY_DAYS = 36500;
/** a bootstrap token is a join credential: a window of at most 30 days (apply replaces an expired one) */
export const MAX_TOKEN_HOURS = 720;
/** A BMC address: an IPv4 address or a DNS name (it is an argument to ipmitool). */
export const BMC_ADDRESS_PATTERN = '^(\\d{1,3}(\\.\\d{1,3}){3}|[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*)$';
/** An IPMI user name: at most 16 bytes (IPMI v2.0, 13.14); printable, no spaces. */
export const BMC_USER_PATTERN = '^[!-~]{1,16}$';


// A plain JSON Schema `enum` (TypeBox unions of literals become anyOf, whose errors
// read badly); the type still narrows to the literal union.
function StringEnum<T extends string[]>(values: [...T], description?: string): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: values, ...(description ? { description } : {}) });
}

// --- Rack networks, proxy and the operator's own additions (issue 20; docs/networks.md) ---
/** A MAC written as six hex pairs, all ":" or all "-". */
export const MAC_PATTERN = '^([0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}|[0-9a-fA-F]{2}(-[0-9a-fA-F]{2}){5})$';
/** A bond member: a NIC's MAC, or its kernel name. */
const MEMBER_PATTERN = '^([0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}|[0-9a-fA-F]{2}(-[0-9a-fA-F]{2}){5}|(?!\\.{1,2}$)[A-Za-z0-9_.-]{1,15})$';
export const BOND_MODES = ['active-backup', '802.3ad', 'balance-xor'] as const;
/** An absolute path of plain segments (none "." or ".."), as Ignition, cloud-config and a shell take it unquoted. */
export const ABS_PATH_PATTERN = '^(/(?!\\.{1,2}(/|$))[A-Za-z0-9._@+=,:-]+)+$';
/** A path beside the cluster file (relative, no ".." segment). */
export const SOURCE_PATTERN = '^(?!/)(?!(.*/)?\\.\\.(/|$))[A-Za-z0-9._@+=,:/-]+$';
const Selector = {
  roles: Type.Optional(Type.Array(StringEnum([...ROLES]), { minItems: 1, description: 'only machines with one of these roles (default: every machine)' })),
  machines: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$' }), { minItems: 1, description: 'only these machines, by name (default: every machine)' })),
};
const Contents = {
  contents: Type.Optional(Type.String({ maxLength: 1048576, description: 'the file\'s text, inline (at most 1 MiB)' })),
  source: Type.Optional(Type.String({ pattern: SOURCE_PATTERN, maxLength: 255, description: 'a file beside the cluster file (relative path, no ".."), read when the cluster file is loaded' })),
};
const Link = Type.Object(
  {
    name: IfName('the link\'s name (a NIC\'s kernel name unless matched by "mac"; the device a bond or VLAN creates)'),
    kind: Type.Optional(StringEnum(['nic', 'bond', 'vlan'], 'nic (default): a physical NIC; bond: NICs bonded into one; vlan: a tagged VLAN on a nic or bond of this machine')),
    mac: Type.Optional(Type.String({ pattern: MAC_PATTERN, description: 'nic: match the NIC by this MAC instead of by its name, e.g. "52:54:00:20:30:11"' })),
    mode: Type.Optional(StringEnum([...BOND_MODES], 'bond: active-backup (default), 802.3ad (LACP; the switch must agree) or balance-xor')),
    lacpRate: Type.Optional(StringEnum(['slow', 'fast'], 'bond, 802.3ad only: how often LACPDUs are asked for (default slow)')),
    members: Type.Optional(Type.Array(Type.String({ pattern: MEMBER_PATTERN, description: 'a member NIC: its MAC or its kernel name' }), { minItems: 1, maxItems: 8, description: 'bond: the member NICs, by MAC (or name); the first is the primary of active-backup' })),
    id: Type.Optional(Type.Integer({ minimum: 1, maximum: 4094, description: 'vlan: the VLAN id, 1..4094' })),
    on: Type.Optional(IfName('vlan: the link (a nic or bond of this machine) that carries the tagged VLAN')),
    mtu: Type.Optional(Type.Integer({ minimum: 68, maximum: 65535, description: 'MTU in bytes, 68..65535 (9000 for jumbo frames); at least 1280 with ipv6' })),
    addresses: Type.Optional(Type.Array(Type.String({ pattern: '^[0-9A-Fa-f:.]+/\\d{1,3}$', description: 'a static address with its prefix length, IPv4 or IPv6 (10.30.0.11/24, fd00::11/64)' }), { maxItems: 16, description: 'static addresses besides the node address (which the node link gets from "ip")' })),
    routes: Type.Optional(
      Type.Array(
        Type.Object({ to: Type.String({ pattern: '^(default|\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2})$', description: 'destination: "default" or an IPv4 CIDR' }), via: IPv4 }, { additionalProperties: false }),
        { maxItems: 64, description: 'static routes on this link (the node link gets the DHCP router as its default route unless it lists routes)' },
      ),
    ),
    dns: Type.Optional(Type.Array(IPv4, { maxItems: 8, description: 'DNS servers on this link (the node link gets spec.provisioner.dhcp.dns unless it lists its own)' })),
    node: Type.Optional(Type.Boolean({ description: 'this link carries the node address ("ip"), the VIP, the kubelet\'s --node-ip and the pod traffic; exactly one link (a machine with one link: that one)' })),
    ipv6: Type.Optional(Type.Boolean({ description: 'IPv6 on this link (link-local addressing); on when it has an IPv6 address; default off' })),
  },
  { additionalProperties: false },
);
const Links = Type.Array(Link, { minItems: 1, maxItems: 32, description: 'the machine\'s links as systemd-networkd configures them after install (instead of "interface")' });
const LinkDefaults = Type.Object(
  { 'control-plane': Type.Optional(Links), etcd: Type.Optional(Links), worker: Type.Optional(Links) },
  { additionalProperties: false, description: 'links for machines that list none, by role (the first of the machine\'s roles that has an entry); NICs by name here, since MACs differ per machine' },
);
const ProxyURL = (what: string) =>
  Type.String({ pattern: '^https?://[A-Za-z0-9.-]+(:\\d{1,5})?/?$', maxLength: 253, description: `${what} proxy URL http://HOST[:PORT] (no user:password: it would be written in clear into every machine's files)` });
const Proxy = Type.Object(
  {
    http: Type.Optional(ProxyURL('HTTP')),
    https: Type.Optional(ProxyURL('HTTPS')),
    noProxy: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z0-9.*:/_-]+$', maxLength: 253, description: 'a host, domain (.example.com) or CIDR reached without the proxy' }), { maxItems: 64, description: 'reached directly (the cluster\'s own ranges, names and the provisioner are added)' })),
  },
  { additionalProperties: false },
);
const FileAddition = Type.Object(
  {
    path: Type.String({ pattern: ABS_PATH_PATTERN, maxLength: 255, description: 'absolute path on the machine' }),
    mode: Type.Optional(Type.String({ pattern: '^0?[0-7]{3}$', description: 'permission bits as a quoted octal string, e.g. "0644" (default "0644")' })),
    owner: Type.Optional(Type.String({ pattern: '^[a-z_][a-z0-9_-]{0,31}(:[a-z_][a-z0-9_-]{0,31})?$', description: 'USER[:GROUP] by name, as the installed system knows them (default root:root; GROUP default root)' })),
    ...Contents,
    ...Selector,
  },
  { additionalProperties: false },
);
const UnitAddition = Type.Object(
  {
    name: Type.String({ pattern: '^[A-Za-z0-9_.@-]+\\.(service|socket|timer|path|target)$', maxLength: 255, description: 'unit name, e.g. log-shipper.service (.service, .socket, .timer, .path or .target)' }),
    enabled: Type.Optional(Type.Boolean({ description: 'linked into the targets its [Install] WantedBy= names (default true)' })),
    ...Contents,
    ...Selector,
  },
  { additionalProperties: false },
);
const SysctlAddition = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9_]+(\\.[A-Za-z0-9_-]+)+$', maxLength: 253, description: 'a sysctl key, e.g. net.core.somaxconn' }),
    value: Type.String({ pattern: ONE_LINE_PATTERN, maxLength: 4096, description: 'its value as sysctl.d takes it, one line (quote numbers: "4096")' }),
    ...Selector,
  },
  { additionalProperties: false },
);
/** One kernel argument as the boot loader's APPEND line and the installer take it: no space, quote, newline or shell character; not "--". */
export const KERNEL_ARG_PATTERN = '^[A-Za-z0-9_][A-Za-z0-9_.,:/=+@%~-]*$';
const KernelArgsAddition = Type.Object(
  {
    args: Type.Array(
      Type.String({ pattern: KERNEL_ARG_PATTERN, maxLength: 256, description: 'one kernel argument, e.g. intel_iommu=on or hugepages=64: letters, digits and . _ - , : / = + @ % ~ (no spaces, quotes or newlines: the boot loader\'s line takes them unquoted)' }),
      { minItems: 1, maxItems: 64, description: 'kernel arguments, appended in this order after Slipway\'s own' },
    ),
    ...Selector,
  },
  { additionalProperties: false },
);
// --- end of issue 20's block ---

const Machine = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$', description: 'DNS-1123 label; also the hostname' }),
    mac: Type.String({ description: 'MAC address of the NIC that network-boots, e.g. "52:54:00:20:30:11"' }),
    ip: Type.String({
      pattern: '^\\d{1,3}(\\.\\d{1,3}){3}(/\\d{1,2})?$',
      description: 'static address after install, with prefix length (10.20.30.11/24); the prefix defaults to the DHCP subnet\'s',
    }),
    roles: Type.Array(Type.String(), { minItems: 1, description: `any of: ${ROLES.join(', ')}` }),
    interface: Type.Optional(IfName('NIC name for the static network config (default: the NIC with this MAC)')),
    disk: Type.Optional(
      Type.String({ pattern: DISK_PATTERN, maxLength: 255, description: 'install disk: a device path under /dev (/dev/sda, /dev/nvme0n1, /dev/disk/by-id/..., /dev/disk/by-path/...); default: the machine\'s only non-removable disk (with several, the install fails listing them)' }),
    ),
    links: Type.Optional(Links),
    // BMC power control (docs/power.md): where the BMC is and where its password is, never the password
    bmc: Type.Optional(
      Type.Object(
        {
          address: Type.String({ pattern: BMC_ADDRESS_PATTERN, maxLength: 253, description: 'the BMC\'s LAN address: an IPv4 address or a DNS name' }),
          port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'UDP port of the BMC\'s RMCP+ service (default 623)' })),
          username: Type.String({ pattern: BMC_USER_PATTERN, description: 'the BMC user: 1-16 printable characters, no spaces' }),
          passwordFile: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'a file holding the password on one line, not readable by everyone (0600); relative to the cluster file' })),
          passwordEnv: Type.Optional(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$', description: 'an environment variable holding the password' })),
          protocol: StringEnum(['ipmi'], 'ipmi: IPMI v2.0 over LAN (RMCP+), through ipmitool'),
          cipher: Type.Optional(Type.Unsafe<3 | 17>({ type: 'integer', enum: [3, 17], description: 'RMCP+ cipher suite: 3 (HMAC-SHA1, AES-128; default) or 17 (HMAC-SHA256, AES-128)' })),
        },
        { additionalProperties: false, description: 'the machine\'s BMC, for `slipway power` and `slipway provision`: exactly one of passwordFile and passwordEnv' },
      ),
    ),
    labels: Type.Optional(
      Type.Record(
        Type.String(),
        Type.String({ pattern: LABEL_VALUE_PATTERN, description: 'a Kubernetes label value: at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit (or empty)' }),
        {
          description: 'extra node labels',
          maxProperties: 64,
          propertyNames: { pattern: LABEL_KEY_PATTERN, description: 'a Kubernetes label key: [prefix/]name, the prefix a DNS subdomain, the name at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit' },
        },
      ),
    ),
  },
  { additionalProperties: false },
);

export const ClusterFileSchema = Type.Object(
  {
    apiVersion: Type.Literal('slipway.dev/v1alpha1'),
    kind: Type.Literal('Cluster'),
    metadata: Type.Object(
      { name: Type.String({ pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$', description: 'DNS-1123 label' }) },
      { additionalProperties: false },
    ),
    spec: Type.Object(
      {
        kubernetesVersion: Type.Optional(
          Type.String({ pattern: '^v\\d+\\.\\d+\\.\\d+$', default: NEWEST_VERSION, description: `one of the minor lines ${KNOWN_VERSIONS[0]}..${NEWEST_VERSION}` }),
        ),
        controlPlane: Type.Optional(
          Type.Object(
            {
              endpoint: Type.Optional(Type.String({ maxLength: 253, description: 'DNS name clients use; goes into certificates, kubeconfigs and /etc/hosts' })),
              vip: Type.Optional(IPv4),
              port: Type.Optional(Port),
              vrid: Type.Optional(Type.Integer({ minimum: 1, maximum: 255, description: 'VRRP virtual router id (default 51)' })),
            },
            { additionalProperties: false },
          ),
        ),
        network: Type.Optional(
          Type.Object(
            {
              serviceCIDR: Type.Optional(CIDR),
              podCIDR: Type.Optional(CIDR),
              dnsDomain: Type.Optional(Type.String({ maxLength: 253, description: 'the cluster\'s DNS domain, a DNS name (default cluster.local)' })),
              cni: Type.Optional(
                StringEnum(
                  [...CNIS],
                  'flannel (default): vxlan overlay. bridge: no overlay, for machines on one L2 segment: each machine gets the /24 of podCIDR at its position in `machines` (the first machine the first /24), a bridge + host-local CNI config and a route to every other machine\'s /24; appending machines keeps existing slices, reordering or removing machines changes them',
                ),
              ),
            },
            { additionalProperties: false },
          ),
        ),
        os: Type.Optional(StringEnum([...OS_CHOICES], 'the OS installed on every machine: debian-12 (default), Slipway\'s own image built from Debian\'s archive by `slipway image build`')),
        ntp: Type.Optional(
          Type.Object(
            {
              servers: Type.Optional(
                Type.Array(Type.String({ pattern: NTP_SERVER_PATTERN, maxLength: 253, description: 'an NTP server: an IPv4 address or a DNS name' }), { minItems: 1, maxItems: 8, description: 'NTP servers the machines sync to (default: the provisioner, which `slipway serve` answers)' }),
              ),
            },
            { additionalProperties: false },
          ),
        ),
        provisioner: Type.Object(
          {
            address: IPv4,
            httpPort: Type.Optional(Port),
            dhcp: Type.Object(
              {
                mode: Type.Optional(StringEnum(['full', 'proxy', 'off'], 'full: Slipway is the DHCP server; proxy: ProxyDHCP beside an existing server; off: use the exported configs')),
                subnet: CIDR,
                router: Type.Optional(IPv4),
                dns: Type.Optional(Type.Array(IPv4)),
                interface: Type.Optional(IfName('interface the DHCP configs name (default eth0)')),
                pool: Type.Optional(
                  Type.Object({ start: IPv4, end: IPv4 }, { additionalProperties: false, description: 'addresses leased to unknown machines' }),
                ),
              },
              { additionalProperties: false },
            ),
          },
          { additionalProperties: false },
        ),
        pki: Type.Optional(
          Type.Object(
            {
              keyAlgorithm: Type.Optional(StringEnum(['ecdsa-p256', 'rsa-2048'])),
              caValidityDays: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_VALIDITY_DAYS, description: `days the CAs are valid, 1..${MAX_VALIDITY_DAYS}` })),
              certValidityDays: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_VALIDITY_DAYS, description: `days leaf certificates are valid, 1..${MAX_VALIDITY_DAYS}, at most caValidityDays` })),
              bootstrapTokenValidityHours: Type.Optional(
                Type.Integer({ minimum: 1, maximum: MAX_TOKEN_HOURS, description: `hours a provisioning window's bootstrap token is valid (kubeadm's default 24), 1..${MAX_TOKEN_HOURS}` }),
              ),
            },
            { additionalProperties: false },
          ),
        ),
        ssh: Type.Optional(
          Type.Object(
            {
              authorizedKeys: Type.Optional(
                Type.Array(Type.String({ pattern: ONE_LINE_PATTERN, maxLength: 16384, description: 'one OpenSSH public key on one line ("ssh-ed25519 AAAA... comment")' })),
              ),
            },
            { additionalProperties: false },
          ),
        ),
        linkDefaults: Type.Optional(LinkDefaults),
        proxy: Type.Optional(Proxy),
        files: Type.Optional(Type.Array(FileAddition, { maxItems: 256, description: 'files of your own on the machines' })),
        units: Type.Optional(Type.Array(UnitAddition, { maxItems: 128, description: 'systemd units of your own on the machines' })),
        sysctls: Type.Optional(Type.Array(SysctlAddition, { maxItems: 256, description: 'kernel settings of your own (sysctl.d)' })),
        kernelArgs: Type.Optional(Type.Array(KernelArgsAddition, { maxItems: 64, description: 'kernel arguments of your own for the installed system (the installer appends them to its boot loader\'s line)' })),
        machines: Type.Array(Machine, { minItems: 1 }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false, $id: 'https://slipway.dev/schemas/cluster-v1alpha1.json', title: 'Slipway Cluster' },
);

export type ClusterFile = Static<typeof ClusterFileSchema>;
