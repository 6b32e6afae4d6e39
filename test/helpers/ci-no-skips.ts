// A test reporter for `npm test`: with CI=true a skipped test fails the run. Tests skip,
// with a reason, when a real consumer (a Debian package, the Kubernetes build) is
// missing; on a machine set up by scripts/test-all.sh nothing may be missing, so a skip
// there means a proof silently did not run.
import type { TestEvent } from 'node:test/reporters';

export default async function* noSkipsInCi(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const skipped: string[] = [];
  for await (const ev of source) {
    if (ev.type === 'test:pass' && ev.data.skip !== undefined) skipped.push(`  ${ev.data.file ?? ''}: ${ev.data.name}: ${ev.data.skip === true ? 'skipped' : ev.data.skip}`);
  }
  if (skipped.length && process.env.CI === 'true') {
    process.exitCode = 1;
    yield `\nCI=true and ${skipped.length} test(s) skipped: what they need is missing (bash scripts/test-all.sh installs it):\n${skipped.join('\n')}\n`;
  }
}
