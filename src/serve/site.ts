// What `slipway serve` serves: the cluster file rendered in memory (the same tree
// `slipway render` writes), looked up by the servers. Replaced whole on SIGHUP.
import type { Spec, Machine } from '../spec/types.ts';
import type { Tree } from '../render/tree.ts';
import type { Secrets } from '../secrets/types.ts';
import type { AssetPins } from '../plan/types.ts';
import { macHyphen } from '../plan/phases/pxe/boot.ts';

export class Site {
  readonly spec: Spec;
  readonly tree: Tree;
  /** what the tree was rendered from (a reprovision renders again with one token changed) */
  readonly secrets: Secrets;
  /** the asset digests it was rendered for (a re-render for a new token keeps them) */
  readonly pins: AssetPins;
  private readonly byName: Map<string, Machine>;

  constructor(spec: Spec, tree: Tree, secrets: Secrets, pins: AssetPins = { bin: {} }) {
    this.spec = spec;
    this.pins = pins;
    this.tree = tree;
    this.secrets = secrets;
    this.byName = new Map(spec.machines.map((m) => [m.name, m]));
  }
  /** machine name → the token its progress reports must carry */
  get machineTokens(): Record<string, string> {
    return this.secrets.machineTokens;
  }


  machine(name: string): Machine | undefined {
    return this.byName.get(name);
  }

  /** contents of a DIR-relative path of the render tree */
  file(rel: string): string | undefined {
    return this.tree.get(rel)?.contents;
  }

  pxelinuxConfig(mac: string): string | undefined {
    return this.file(`pxe/pxelinux.cfg/01-${macHyphen(mac)}`);
  }
}
