// The TFTP server's Prometheus metrics (slipway_tftp_*). Label values come from small
// fixed sets (refusal and drop reasons, failure kinds), never from clients' input.
import { Gauge, type Registry } from 'prom-client';
import { counter, gauge, histogram } from '../metrics.ts';

export function tftpMetrics(r: Registry) {
  return {
    requests: counter(r, 'slipway_tftp_requests_total', 'TFTP requests received, by opcode (RRQ, WRQ)', ['op']),
    sentBytes: counter(r, 'slipway_tftp_sent_bytes_total', 'File bytes sent in DATA packets, retransmissions included'),
    completed: counter(r, 'slipway_tftp_transfers_completed_total', 'Transfers whose final block was acknowledged'),
    // client_abort: the client sent an ERROR; client_gone: its port closed (ICMP unreachable).
    // PXE ROMs do either on purpose after learning a file's size (tsize probe), so a share
    // of these is normal.
    failed: counter(r, 'slipway_tftp_transfers_failed_total', 'Transfers that ended early, by reason (timeout, client_abort, client_gone, io, closed, superseded)', ['reason']),
    refusals: counter(r, 'slipway_tftp_refusals_total', 'Requests answered with a TFTP ERROR instead of a file, by reason', ['reason']),
    retransmits: counter(r, 'slipway_tftp_retransmits_total', 'DATA and OACK packets sent again after a timeout or a loss report'),
    dropped: counter(r, 'slipway_tftp_dropped_packets_total', 'Incoming packets ignored, by reason (parse errors, stray or unexpected packets)', ['reason']),
    options: counter(r, 'slipway_tftp_options_acknowledged_total', 'Options acknowledged in OACKs, by option name', ['option']),
    cache: counter(r, 'slipway_tftp_cache_lookups_total', 'File cache lookups for cacheable files, by result (hit, miss)', ['result']),
    duration: histogram(r, 'slipway_tftp_transfer_duration_seconds', 'Time from request to final acknowledgement of completed transfers'),
    active: (r.getSingleMetric('slipway_tftp_active_transfers') as Gauge | undefined) ?? new Gauge({ name: 'slipway_tftp_active_transfers', help: 'Transfers in progress', registers: [r] }),
    limit: gauge(r, 'slipway_tftp_transfer_limit', 'Concurrent transfers before requests get "Server busy" (serve: from the open-file limit)'),
  };
}

export type TftpMetrics = ReturnType<typeof tftpMetrics>;
