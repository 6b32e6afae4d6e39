import { test } from 'node:test';
import assert from 'node:assert/strict';
import { plainConsole } from './console-text.ts';

test('iPXE download progress reads as the terminal shows it', () => {
  // bytes as iPXE sent them on a slow download (a serial log of the vm-image test)
  const raw = 'http://10.20.30.2:8080/assets/os/vmlinuz... 31%\b\b\b\b    \b\b\b\b 70%\b\b\b\b    \b\b\b\b ok\r\n';
  assert.equal(plainConsole(raw), 'http://10.20.30.2:8080/assets/os/vmlinuz... ok\r\n');
});

test('escape sequences go, bare CRs break lines, backspaces never reach before the line', () => {
  assert.equal(plainConsole('\x1b[2J\x1b[1;1HiPXE 1.21\rnext'), 'iPXE 1.21\nnext');
  assert.equal(plainConsole('ab\b\b\bc\nx\by'), 'cb\ny');
  assert.equal(plainConsole('no backspaces\r\n'), 'no backspaces\r\n');
});
