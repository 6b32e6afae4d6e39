// A VM's serial console as text a person (or a regexp) reads: what the terminal would
// show. Firmware and iPXE draw with escape sequences, bare CRs and backspaces; iPXE's
// download progress is "vmlinuz... 31%\b\b\b\b    \b\b\b\b ok", which a terminal shows
// as "vmlinuz... ok".

/** Escape sequences removed, bare CRs as line breaks, backspaces applied (overstrike). */
export function plainConsole(s: string): string {
  const t = s.replace(/\x1b\[[0-9;?=]*[A-Za-z]/g, '').replace(/\r(?!\n)/g, '\n');
  return t.includes('\b') ? t.split('\n').map(overstrike).join('\n') : t;
}

/** One line as a terminal leaves it: a backspace moves back, the next character overwrites. */
function overstrike(line: string): string {
  if (!line.includes('\b')) return line;
  const cells: string[] = [];
  let at = 0;
  for (const c of line) {
    if (c === '\b') at = Math.max(0, at - 1);
    else cells[at++] = c;
  }
  return cells.join('');
}
