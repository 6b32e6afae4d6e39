// The cluster's own API, from the provisioner: a small Kubernetes REST client over HTTPS
// with the state's admin credential (the `admin` leaf, system:masters), trying each
// apiserver address in turn (the VIP first, then the control-plane machines' own). What
// serve needs to open a provisioning window; kubectl is on the machines, not here.
import { mtlsRequest } from '../lib/mtls.ts';
import type { CertKey } from '../secrets/types.ts';

export interface KubeClientOptions {
  /** https://host:port, tried in order: a connection that fails (refused, unreachable, timed out) moves on to the next */
  endpoints: string[];
  /** the cluster CA (PEM), the only one trusted */
  ca: string;
  /** the client certificate and key */
  client: CertKey;
  /** per request and endpoint; default 10 s */
  timeoutMs?: number;
}

export class KubeError extends Error {
  /** the HTTP status, when the apiserver answered */
  readonly status?: number;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
  }
}

export interface KubeResponse {
  status: number;
  body: string;
}

export class KubeClient {
  private readonly o: KubeClientOptions;
  constructor(o: KubeClientOptions) {
    if (!o.endpoints.length) throw new KubeError('no apiserver address to ask');
    this.o = o;
  }

  /** One request; an answer of any status is returned, a connection failure on every endpoint throws naming each. */
  async request(method: string, path: string, body?: unknown): Promise<KubeResponse> {
    const failures: string[] = [];
    for (const endpoint of this.o.endpoints) {
      try {
        return await this.once(endpoint, method, path, body);
      } catch (e) {
        failures.push(`${endpoint}: ${(e as Error).message}`);
      }
    }
    throw new KubeError(`no apiserver answered (${failures.join('; ')})`);
  }

  private async once(endpoint: string, method: string, path: string, body?: unknown): Promise<KubeResponse> {
    const r = await mtlsRequest(new URL(path, endpoint), { ca: this.o.ca, cert: this.o.client.cert, key: this.o.client.key }, { method, body, timeoutMs: this.o.timeoutMs ?? 10_000 });
    return { status: r.status, body: r.body }; // an error Status is small; nothing here reads a large answer
  }

  /** Creates an object (POST to its collection); anything but 201 throws with the apiserver's message. */
  async create(collection: string, obj: unknown): Promise<void> {
    const r = await this.request('POST', collection, obj);
    if (r.status !== 201 && r.status !== 200) throw new KubeError(`POST ${collection}: ${statusText(r)}`, r.status);
  }

  /** Deletes an object; one already gone is fine. */
  async delete(path: string): Promise<void> {
    const r = await this.request('DELETE', path);
    if (r.status !== 200 && r.status !== 202 && r.status !== 404) throw new KubeError(`DELETE ${path}: ${statusText(r)}`, r.status);
  }
}

/** The apiserver's own message (a Status object), else the start of the body. */
function statusText(r: KubeResponse): string {
  try {
    const s = JSON.parse(r.body) as { message?: string };
    if (s.message) return `HTTP ${r.status}: ${s.message}`;
  } catch {
    // not JSON
  }
  return `HTTP ${r.status}: ${r.body.trim().slice(0, 300)}`;
}
