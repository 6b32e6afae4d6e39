// How benchmarks print their figures.

/** Aligned columns on stdout (first row: the headings). */
export function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows) console.log(r.map((v, c) => v.padEnd(widths[c]!)).join('  '));
}

/** A rehearsal report's per-machine milestones and checks (the first run's). */
export function printRehearsal(rep: { machines: { name: string; seconds: object }[]; checks: { name: string; result: string; seconds: number }[] }): void {
  console.log('per machine (seconds from power-on):');
  for (const m of rep.machines) console.log(`  ${m.name.padEnd(6)} ${JSON.stringify(m.seconds)}`);
  console.log('checks:', rep.checks.map((c) => `${c.name} ${c.result} ${c.seconds}s`).join(', '));
}
