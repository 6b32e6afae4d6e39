// Machines' BMCs (issue 18; docs/power.md): the checks a schema cannot make, and the
// resolved form power/ reads. The password itself is never read here: only where it is
// (a file, checked to exist and not be readable by everyone, or an environment variable).
import { statSync } from 'node:fs';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import type { ClusterFile } from './schema.ts';
import type { PathSeg, Problem } from './problems.ts';
import type { BmcSpec } from './types.ts';

export const BMC_DEFAULT_PORT = 623;
export const BMC_DEFAULT_CIPHER = 3;

type FileBmc = NonNullable<ClusterFile['spec']['machines'][number]['bmc']>;

const passwordPath = (b: FileBmc, baseDir: string): string | undefined =>
  b.passwordFile === undefined ? undefined : isAbsolute(b.passwordFile) ? b.passwordFile : resolvePath(baseDir, b.passwordFile);

export function bmcProblems(cf: ClusterFile, baseDir: string, env: NodeJS.ProcessEnv = process.env): Problem[] {
  const out: Problem[] = [];
  const seen = new Map<string, number>();
  cf.spec.machines.forEach((m, i) => {
    const b = m.bmc;
    if (!b) return;
    const at = (...f: PathSeg[]): PathSeg[] => ['spec', 'machines', i, 'bmc', ...f];
    const err = (path: PathSeg[], message: string) => out.push({ severity: 'error', path, message });
    const key = `${b.address}:${b.port ?? BMC_DEFAULT_PORT}`;
    const first = seen.get(key);
    if (first !== undefined) err(at('address'), `the BMC ${key} is also spec.machines[${first}].bmc's (${cf.spec.machines[first]!.name}): one BMC powers one machine`);
    else seen.set(key, i);
    if ((b.passwordFile === undefined) === (b.passwordEnv === undefined)) {
      err(at(), 'give exactly one of passwordFile and passwordEnv (the password itself never goes in the cluster file)');
      return;
    }
    if (b.passwordEnv !== undefined) {
      if (!env[b.passwordEnv]) out.push({ severity: 'warning', path: at('passwordEnv'), message: `${b.passwordEnv} is not set in this environment: power and provision will need it` });
      return;
    }
    const path = passwordPath(b, baseDir)!;
    try {
      const st = statSync(path);
      if (!st.isFile()) err(at('passwordFile'), `${path} is not a regular file`);
      else if (st.mode & 0o004) err(at('passwordFile'), `${path} is readable by everyone (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): chmod 600 it`);
      else if (st.size === 0) err(at('passwordFile'), `${path} is empty`);
    } catch (e) {
      err(at('passwordFile'), `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  });
  return out;
}

export function resolveBmc(cf: ClusterFile, i: number, baseDir: string): BmcSpec | undefined {
  const b = cf.spec.machines[i]!.bmc;
  if (!b) return undefined;
  return {
    address: b.address,
    port: b.port ?? BMC_DEFAULT_PORT,
    username: b.username,
    password: b.passwordEnv !== undefined ? { env: b.passwordEnv } : { file: passwordPath(b, baseDir)! },
    protocol: b.protocol,
    cipher: b.cipher ?? BMC_DEFAULT_CIPHER,
  };
}
