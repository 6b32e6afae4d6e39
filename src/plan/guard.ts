// The writers' own refusal. The schema already holds every string of the cluster file
// to what its consumer accepts; these checks make each writer refuse, by itself, a value
// its file format cannot hold (a newline ends a systemd or networkd line, whitespace ends a
// flag), so a value that slips past validation — or comes from somewhere else later, such
// as facts a machine reports about itself — cannot add lines or settings to a file.
import { IFNAME_PATTERN } from '../spec/schema.ts';

/** A value that a rendered file cannot hold; names the file and the setting. */
export class Unrenderable extends Error {
  constructor(where: string, value: string, why: string) {
    super(`cannot write ${JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value)} into ${where}: ${why}`);
    this.name = 'Unrenderable';
  }
}

const CONTROL = /[\u0000-\u001f\u007f]/;
const IFNAME = new RegExp(IFNAME_PATTERN);

/** One line of text: no control characters (newline, carriage return, NUL, tab...). */
export function oneLine(value: string, where: string): string {
  if (CONTROL.test(value)) throw new Unrenderable(where, value, 'it holds a control character (a newline would start another line)');
  return value;
}

/** One word: one line and no whitespace, and not empty. */
export function word(value: string, where: string): string {
  oneLine(value, where);
  if (value === '' || /\s/.test(value)) throw new Unrenderable(where, value, 'it must be one word, without spaces');
  return value;
}

/** A Linux interface name, as networkd's Name=, keepalived's interface and dnsmasq take it. */
export function ifname(value: string, where: string): string {
  if (!IFNAME.test(value)) throw new Unrenderable(where, value, 'not a Linux interface name (1-15 letters, digits, "-", "_" or ".")');
  return value;
}
