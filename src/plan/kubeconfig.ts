// kubeconfig files with everything embedded (no paths to resolve on the machine).
import { stringify } from 'yaml';

export interface KubeconfigUser {
  name: string;
  clientCert?: string;
  clientKey?: string;
  token?: string;
  /** kubelet: reference the rotated certificate on disk instead of embedding one */
  certFile?: string;
  keyFile?: string;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

export function kubeconfig(opts: { cluster: string; server: string; caCert: string; user: KubeconfigUser }): string {
  const { cluster, server, caCert, user } = opts;
  const context = `${user.name}@${cluster}`;
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: cluster, cluster: { server, 'certificate-authority-data': b64(caCert) } }],
    users: [
      {
        name: user.name,
        user: {
          ...(user.clientCert ? { 'client-certificate-data': b64(user.clientCert) } : {}),
          ...(user.clientKey ? { 'client-key-data': b64(user.clientKey) } : {}),
          ...(user.certFile ? { 'client-certificate': user.certFile } : {}),
          ...(user.keyFile ? { 'client-key': user.keyFile } : {}),
          ...(user.token ? { token: user.token } : {}),
        },
      },
    ],
    contexts: [{ name: context, context: { cluster, user: user.name } }],
    'current-context': context,
    preferences: {},
  });
}
