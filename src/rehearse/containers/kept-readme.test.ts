// A kept rehearsal's README is the operator's only list of what is left to remove: it
// must name every machine's root, also of a machine a second Ctrl-C caught before its
// container started (CI saw such a root left mounted when the README skipped it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keptReadme } from './engine.ts';
import { parseKeptReadme } from './kept.ts';
import { haSpec } from '../../../test/helpers/spec.ts';

test('a kept README names every root, says which containers are not running, and lists only the cgroups made', () => {
  const [cp1, cp2] = haSpec().machines;
  const run = '/var/tmp/slipway-rehearsal-x';
  const started = { m: cp1!, ns: { name: 'slipway-rh-cp1-1' }, root: `${run}/machines/cp1/root`, pid: 101, leaderPid: 104, cgroupDirs: ['/sys/fs/cgroup/slipway-rehearsal-9-cp1'] };
  const notYet = { m: cp2!, ns: { name: 'slipway-rh-cp2-2' }, root: `${run}/machines/cp2/root`, pid: undefined, leaderPid: undefined, cgroupDirs: [] };
  const readme = keptReadme(run, { hub: { name: 'slipway-rh-lab-0' }, serve: { pid: 100 } }, [started, notYet]);
  assert.match(readme, /^Rehearsal kept at \/var\/tmp\/slipway-rehearsal-x$/m);
  assert.match(readme, /^lab namespace: slipway-rh-lab-0 \(slipway serve, pid 100\)$/m);
  assert.match(readme, /^ {2}cp1: namespace slipway-rh-cp1-1, root \/var\/tmp\/slipway-rehearsal-x\/machines\/cp1\/root, systemd-nspawn pid 101, its PID 1 pid 104$/m);
  assert.match(readme, /^ {2}cp2: namespace slipway-rh-cp2-2, root \/var\/tmp\/slipway-rehearsal-x\/machines\/cp2\/root, systemd-nspawn not running \(not started yet when the rehearsal exited, or stopped\)$/m);
  assert.match(readme, /^cgroups: \/sys\/fs\/cgroup\/slipway-rehearsal-9-cp1$/m);
  assert.match(readme, /umount the roots/);
  // the test that removes a kept rehearsal by its README finds each root this way
  assert.deepEqual([...readme.matchAll(/root (\S+?),/g)].map((m) => m[1]), [started.root, notYet.root]);
});

test('a README written before the lab existed says so', () => {
  assert.match(keptReadme('/var/tmp/r', undefined, []), /^lab namespace: - \(not made yet\)$/m);
});

test('a kept README reads back as it was written (kept.ts rewrites it as machines are added or powered off)', () => {
  const [cp1, cp2] = haSpec().machines;
  const run = '/var/tmp/slipway-rehearsal-y';
  const machines = [
    { m: cp1!, ns: { name: 'slipway-rh-cp1-1' }, root: `${run}/machines/cp1/root`, pid: 101, leaderPid: 104, cgroupDirs: ['/sys/fs/cgroup/unified/a/slipway-rehearsal-9-cp1', '/sys/fs/cgroup/systemd/a/slipway-rehearsal-9-cp1'] },
    { m: cp2!, ns: { name: 'slipway-rh-cp2-2' }, root: `${run}/machines/cp2/root`, pid: undefined, leaderPid: undefined, cgroupDirs: ['/sys/fs/cgroup/unified/a/slipway-rehearsal-9-cp2'] },
    { m: { name: 'w-3' }, ns: { name: 'slipway-rh-w-3-3' }, root: `${run}/machines/w-3/root`, pid: 201, leaderPid: undefined, cgroupDirs: ['/sys/fs/cgroup/unified/a/slipway-rehearsal-12-w-3'] },
  ];
  const text = keptReadme(run, { hub: { name: 'slipway-rh-lab-0' }, serve: { pid: 100 } }, machines, '/var/cache/slipway/os-image/k/root');
  const s = parseKeptReadme(text);
  assert.deepEqual(s, {
    run, hub: 'slipway-rh-lab-0', servePid: 100, image: '/var/cache/slipway/os-image/k/root',
    machines: machines.map((m) => ({ name: m.m.name, ns: m.ns.name, root: m.root, pid: m.pid, leaderPid: m.leaderPid, cgroupDirs: m.cgroupDirs })),
  });
  // written again from what was read: the same text
  assert.equal(keptReadme(s.run, { hub: { name: s.hub }, serve: { pid: s.servePid } }, s.machines.map((e) => ({ ...e, m: { name: e.name }, ns: { name: e.ns } })), s.image), text);
  assert.throws(() => parseKeptReadme(keptReadme(run, undefined, [])), /not the README of a kept rehearsal with a lab/);
});
