// A BMC's password, read when it is needed and handed only to the driver: never kept in
// the Spec, never logged. The cluster file names where it is (a file or an environment
// variable), not what it is.
import { readFile, stat } from 'node:fs/promises';
import { PowerError, type Bmc } from './driver.ts';

export async function readPassword(bmc: Bmc, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const src = bmc.password;
  if ('env' in src) {
    const v = env[src.env];
    if (v === undefined || v === '') throw new PowerError('password', `${bmc.machine}: environment variable ${src.env} (bmc.passwordEnv) is not set`);
    return v;
  }
  let text: string;
  try {
    const st = await stat(src.file);
    // the same rule validate applies: a world-readable password is already leaked
    if (st.mode & 0o004) throw new PowerError('password', `${bmc.machine}: ${src.file} (bmc.passwordFile) is readable by everyone: chmod o-r it (0600)`);
    text = await readFile(src.file, 'utf8');
  } catch (e) {
    if (e instanceof PowerError) throw e;
    throw new PowerError('password', `${bmc.machine}: cannot read ${src.file} (bmc.passwordFile): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  // one line, as `echo secret > file` writes it
  const pw = text.replace(/\r?\n$/, '');
  if (pw === '' || /[\r\n]/.test(pw)) throw new PowerError('password', `${bmc.machine}: ${src.file} (bmc.passwordFile) must hold the password on one line`);
  return pw;
}
