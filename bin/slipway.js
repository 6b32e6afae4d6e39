#!/usr/bin/env node
// Thin launcher: Slipway runs its TypeScript sources directly on the Node LTS the
// project pins (node_modules/.bin/node, put first on PATH by npm/npx).
const [major] = process.versions.node.split('.').map(Number);
if (major < 24) {
  console.error(`slipway: needs Node.js >= 24 (found ${process.version}); run it through npx or npm scripts after npm ci`);
  process.exit(2);
}
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
