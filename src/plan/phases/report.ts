// The machine tells the provisioner how far it got (guide 03's installer learned a
// machine was done only when it called home): a small script and units that report
// installing → installed → joined → ready, and every failed unit with its last log
// lines, to POST /api/v1/report, authenticated by the machine's own token.
import { apiServerURL, provisionerURL } from '../../spec/types.ts';
import { unitFile } from '../systemd.ts';
import type { File, Phase, PhaseContext } from '../types.ts';
import { BIN, KUBELET_CLIENT_CERT, PKI, SLIPWAY, UNITS } from '../paths.ts';
import { MISSING_LIST } from './node.ts';
import { REPORT_PATH } from './install.ts';

export const REPORT_SCRIPT = `${SLIPWAY}/report.sh`;
export const FAILURE_UNIT = 'slipway-report-failure@.service';
/** The node OS makes it at a machine's first boot (slipway-ssh-hostkeys.service). */
export const HOST_KEY_PUB = '/etc/ssh/ssh_host_ed25519_key.pub';

// POSIX sh, sed, tr and curl only (the node OS carries no python or jq). JSON strings are escaped
// by sed: backslash, quote, tab, newline; other control characters dropped.
const script = (ctx: PhaseContext, name: string) => `#!/bin/sh
# Report this machine's provisioning progress to Slipway: report.sh STATE [REASON] [UNIT]
set -u
URL="${provisionerURL(ctx.spec)}${REPORT_PATH}"
TOKEN=$(cat ${SLIPWAY}/report-token)
SEQ_FILE=/var/lib/slipway/report-seq
state=$1; reason=\${2:-}; unit=\${3:-}
esc() { printf '%s' "$1" | sed -e 's/\\\\/\\\\\\\\/g' -e 's/"/\\\\"/g' -e 's/\\t/ /g' | tr -d '\\000-\\010\\013-\\037' | sed -e ':a' -e 'N' -e '$!ba' -e 's/\\n/\\\\n/g'; }
mkdir -p /var/lib/slipway
# One report at a time (a unit can fail while progress.sh reports): two reports must
# never read the same seq, or the provisioner refuses the second as a replay.
exec 9>/var/lib/slipway/report.lock
flock -w 60 9 || true
# seq: strictly increasing per machine, so the provisioner can refuse replayed reports
seq=$(( $(cat "$SEQ_FILE" 2>/dev/null || echo 0) + 1 )); echo "$seq" > "$SEQ_FILE"
detail=""
if [ -n "$unit" ]; then
  logs=$(journalctl -u "$unit" -n 20 --no-pager -o cat 2>/dev/null | tail -c 8000)
  detail=", \\"detail\\": {\\"unit\\": \\"$(esc "$unit")\\", \\"logs\\": \\"$(esc "$logs")\\"}"
fi
# installed: with this system's SSH host key, which serve pins for \`slipway apply\`
hostkey=""
if [ "$state" = installed ] && [ -s ${HOST_KEY_PUB} ]; then
  hostkey=", \\"hostKey\\": \\"$(cut -d' ' -f1,2 ${HOST_KEY_PUB})\\""
fi
body="{\\"machine\\": \\"${name}\\", \\"state\\": \\"$state\\", \\"seq\\": $seq, \\"reason\\": \\"$(esc "$reason")\\"$detail$hostkey}"
curl -fsS --retry 10 --retry-delay 3 --retry-connrefused -m 10 -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' --data-binary "$body" "$URL" >/dev/null
`;

// Waits (bounded) for each milestone and reports it; runs once per boot.
const progress = (ctx: PhaseContext, name: string) => `#!/bin/sh
# The installer reported installed (image written, Ignition applied) before it rebooted
# into this system; installed again here: the binaries arrived (or which are missing).
# joined: the kubelet's TLS bootstrap finished; ready: the API says this node is Ready.
set -u
R=${REPORT_SCRIPT}
systemctl is-active --quiet slipway-binaries.service || systemctl start slipway-binaries.service || { $R failed "binaries could not be fetched" slipway-binaries.service; exit 1; }
# The installed report carries the SSH host key (made at first boot, before ssh.service).
for i in $(seq 30); do [ -s ${HOST_KEY_PUB} ] && break; sleep 2; done
missing=$(cat ${MISSING_LIST} 2>/dev/null || true)
if [ -n "$missing" ]; then
  $R installed "not in the provisioner's assets: $missing (the units that run them do not start)"
else
  $R installed
fi
# No kubelet, no node: nothing more to wait for.
[ -x ${BIN}/kubelet ] || exit 0
# The client certificate, not kubelet.conf: with rotateCertificates the kubelet writes
# kubelet.conf at start, before its CSR is approved.
for i in $(seq 360); do [ -s ${KUBELET_CLIENT_CERT} ] && break; sleep 5; done
[ -s ${KUBELET_CLIENT_CERT} ] || exit 0
$R joined
for i in $(seq 360); do
  if curl -fsS -m 5 --cacert ${PKI}/ca.crt --cert ${KUBELET_CLIENT_CERT} --key ${KUBELET_CLIENT_CERT} \\
      "${apiServerURL(ctx.spec)}/api/v1/nodes/${name}" 2>/dev/null | tr -d ' \\n' | grep -q '"type":"Ready","status":"True"'; then
    $R ready; exit 0
  fi
  sleep 5
done
`;

export const reportPhase: Phase = {
  name: 'report',
  machine(ctx, m) {
    const token = ctx.secrets.machineTokens[m.name];
    if (!token) throw new Error(`secrets have no report token for ${m.name}`);
    const files: File[] = [
      { path: `${SLIPWAY}/report-token`, mode: 0o600, contents: token + '\n', secret: true },
      { path: REPORT_SCRIPT, mode: 0o755, contents: script(ctx, m.name) },
      { path: `${SLIPWAY}/progress.sh`, mode: 0o755, contents: progress(ctx, m.name) },
      {
        path: `${UNITS}/slipway-progress.service`,
        mode: 0o644,
        contents: unitFile({
          Unit: { Description: 'Report provisioning progress to Slipway', Wants: 'network-online.target', After: ['network-online.target'] },
          Service: { Type: 'simple', ExecStart: `/bin/sh ${SLIPWAY}/progress.sh` },
          Install: { WantedBy: 'multi-user.target' },
        }),
      },
      {
        path: `${UNITS}/${FAILURE_UNIT}`,
        mode: 0o644,
        contents: unitFile({
          Unit: { Description: 'Report the failure of %i to Slipway' },
          Service: { Type: 'oneshot', ExecStart: `/bin/sh ${REPORT_SCRIPT} failed "unit %i failed" %i` },
        }),
      },
    ];
    return files;
  },
};

/** A drop-in per unit of ours: when it fails, slipway-report-failure@<unit> reports it with its logs. */
export function failureDropIns(files: File[]): File[] {
  return files
    .filter((f) => !f.link && /^\/etc\/systemd\/system\/[^/@]+\.service$/.test(f.path) && !f.path.includes('slipway-progress'))
    .map((f) => ({
      path: `${f.path}.d/10-slipway-report.conf`,
      mode: 0o644,
      contents: unitFile({ Unit: { OnFailure: 'slipway-report-failure@%n.service' } }),
    }));
}
