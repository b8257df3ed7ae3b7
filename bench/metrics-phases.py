#!/usr/bin/env python3
"""bench/metrics-phases.py: the server side of a request from saved /metrics texts.

    bench/server-ab.sh ... --keep DIR && bench/metrics-phases.py DIR/*.metrics

For each file: p50/p99 (interpolated inside the histogram's buckets, so approximate) and the
shares over 1 ms and 2.5 ms of the ingests' parse-to-release latency, its two phases (to_ack:
parse -> the turn that saw the acknowledgement; release: that turn -> release), the commit per
batch (ticketq_fsync_seconds) and per record (ticketq_fsync_record_seconds) and the loop's
turns. The histograms count from the server's start, so a tq-loadgen setup is included.
"""
import re, sys
if len(sys.argv) < 2 or sys.argv[1] in ('-h', '--help'):
    print(__doc__)
    sys.exit(0 if len(sys.argv) == 2 else 2)
import re, sys, glob
def hists(path):
    h = {}
    for line in open(path):
        m = re.match(r'(\w+)_bucket\{(.*)le="([^"]+)"\} (\d+)', line)
        if not m: continue
        name, labels, le, v = m.groups()
        if name == 'ticketq_request_seconds' and 'op="ingest"' not in labels: continue
        key = name + ('{' + labels.rstrip(',') + '}' if 'phase' in labels else '')
        h.setdefault(key, []).append((float('inf') if le == '+Inf' else float(le), int(v)))
    return h
def q(b, p):
    tot = b[-1][1]; want = p * tot; prev_le, prev_c = 0.0, 0
    for le, c in b:
        if c >= want:
            if le == float('inf'): return float('inf')
            return prev_le + (le - prev_le) * (want - prev_c) / max(1, c - prev_c)
        prev_le, prev_c = le, c
def over(b, x):
    tot = b[-1][1]
    for le, c in b:
        if abs(le - x) < 1e-9: return 100.0 * (tot - c) / tot
    return float('nan')
for f in sorted(sys.argv[1:], key=lambda s: (len(s), s)):
    print(f.split('/')[-1])
    h = hists(f)
    for k in ['ticketq_request_seconds', 'ticketq_request_phase_seconds{phase="to_ack"}',
              'ticketq_request_phase_seconds{phase="release"}', 'ticketq_fsync_seconds', 'ticketq_fsync_record_seconds', 'ticketq_turn_seconds']:
        if k not in h: continue
        b = h[k]
        print('  %-50s n %9d p50 %6.3f p99 %6.3f ms  >1ms %5.2f%% >2.5ms %5.2f%%' % (k, b[-1][1], q(b, .5)*1e3, q(b, .99)*1e3, over(b, 0.001), over(b, 0.0025)))
