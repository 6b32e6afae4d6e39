// The cluster file's shape, written once as TypeBox: it is both the JSON Schema that
// `slipway schema` prints (for editors) and the validator the parser runs (via Ajv).
// Semantic rules that JSON Schema cannot express live in validate.ts.
import { Type, type Static, type TUnsafe } from '@sinclair/typebox';
import { KNOWN_VERSIONS, NEWEST_VERSION } from '../plan/versions.ts';

const IPv4 = Type.String({ format: 'ipv4', description: 'IPv4 address, e.g. 10.20.30.2' });
const CIDR = Type.String({
  pattern: '^\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2}$',
  description: 'IPv4 network in CIDR notation, e.g. 10.244.0.0/16',
});
const Port = Type.Integer({ minimum: 1, maximum: 65535 });

export const ROLES = ['control-plane', 'etcd', 'worker'] as const;

// A plain JSON Schema `enum` (TypeBox unions of literals become anyOf, whose errors
// read badly); the type still narrows to the literal union.
function StringEnum<T extends string[]>(values: [...T], description?: string): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: values, ...(description ? { description } : {}) });
}

const Machine = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$', description: 'DNS-1123 label; also the hostname' }),
    mac: Type.String({ description: 'MAC address of the NIC that network-boots, e.g. "52:54:00:20:30:11"' }),
    ip: Type.String({
      pattern: '^\\d{1,3}(\\.\\d{1,3}){3}(/\\d{1,2})?$',
      description: 'static address after install, with prefix length (10.20.30.11/24); the prefix defaults to the DHCP subnet\'s',
    }),
    roles: Type.Array(Type.String(), { minItems: 1, description: `any of: ${ROLES.join(', ')}` }),
    interface: Type.Optional(Type.String({ description: 'NIC name for the static network config (default: the NIC with this MAC)' })),
    disk: Type.Optional(Type.String({ description: 'install disk (default /dev/sda)' })),
    labels: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'extra node labels' })),
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
              endpoint: Type.Optional(Type.String({ description: 'DNS name clients use; goes into certificates, kubeconfigs and /etc/hosts' })),
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
              dnsDomain: Type.Optional(Type.String()),
              cni: Type.Optional(
                StringEnum(
                  ['flannel', 'bridge'],
                  'flannel (default): vxlan overlay. bridge: no overlay, for machines on one L2 segment: each machine gets the /24 of podCIDR at its position in `machines` (the first machine the first /24), a bridge + host-local CNI config and a route to every other machine\'s /24; appending machines keeps existing slices, reordering or removing machines changes them',
                ),
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
                interface: Type.Optional(Type.String({ description: 'interface the DHCP configs name (default eth0)' })),
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
              caValidityDays: Type.Optional(Type.Integer({ minimum: 1 })),
              certValidityDays: Type.Optional(Type.Integer({ minimum: 1 })),
            },
            { additionalProperties: false },
          ),
        ),
        ssh: Type.Optional(
          Type.Object({ authorizedKeys: Type.Optional(Type.Array(Type.String())) }, { additionalProperties: false }),
        ),
        machines: Type.Array(Machine, { minItems: 1 }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false, $id: 'https://slipway.dev/schemas/cluster-v1alpha1.json', title: 'Slipway Cluster' },
);

export type ClusterFile = Static<typeof ClusterFileSchema>;
