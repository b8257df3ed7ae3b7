#!/usr/bin/env python3
"""bench/commit-chain.py: where one group commit's time goes in the kernel (RWF_DSYNC batches).

Pairs each of the log's batch writes through the kernel, from `perf script` text of a
system-wide recording made while ticketqd runs (docs/performance-server.md, 2026-12-03, "The
open loop's tail without snapshots"):

    perf record -a -o perf.data -e io_uring:io_uring_submit_req -e io_uring:io_uring_complete \\
        -e block:block_rq_issue -e block:block_rq_complete \\
        -e workqueue:workqueue_execute_start -e sched:sched_switch -e sched:sched_wakeup -- sleep 2
    perf script -i perf.data -F comm,tid,cpu,time,event,trace > script.txt
    bench/commit-chain.py script.txt LOOP_TID     # LOOP_TID = ticketqd's main thread

Stages: the loop submits the write SQE -> the data write is issued (inline, O_DIRECT) -> it
completes (IRQ) -> the file system's direct-I/O completion work starts (a per-CPU kworker: with
RWF_DSYNC and no FUA it issues the flush) -> the flush is issued -> it completes -> the loop runs
the completion (io_uring_complete in the loop thread). Flushes are paired in time order, which
is approximate with two batches in flight. Also prints the loop thread's state (on a CPU,
runnable, asleep) when the flush completed, and for the asleep case the split at its wake-up.
The recording itself slows the machine (sched events): compare stages, not absolute totals.
"""
import re, sys, bisect
if len(sys.argv) != 3 or sys.argv[1] in ('-h', '--help'):
    print(__doc__)
    sys.exit(0 if len(sys.argv) == 2 else 2)
ev = []
pat = re.compile(r'^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s(.*)$')
for line in open(sys.argv[1]):
    m = pat.match(line)
    if not m: continue
    comm, tid, cpu, t, e, rest = m.groups()
    ev.append((float(t) * 1e6, comm.strip(), int(tid), int(cpu), e, rest))
loop_tid = int(sys.argv[2])
subs = {}; adds = {}; comps = {}
w_issue = []; w_done = {}; ff_issue = []; ff_done = []; dio = []
for t, comm, tid, cpu, e, rest in ev:
    if e == 'io_uring:io_uring_submit_req' and 'opcode WRITE' in rest and tid == loop_tid:
        ud = re.search(r'user_data (\S+),', rest).group(1); subs.setdefault(ud, []).append(t)
    elif e == 'io_uring:io_uring_task_add' and 'opcode WRITE' in rest:
        ud = re.search(r'user_data (\S+),', rest).group(1); adds.setdefault(ud, []).append((t, cpu, comm))
    elif e == 'io_uring:io_uring_complete':
        ud = re.search(r'user_data (\S+),', rest).group(1)
        if ud in subs: comps.setdefault(ud, []).append(t)
    elif e == 'block:block_rq_issue':
        f = rest.split()
        if f[1] == 'FF': ff_issue.append(t)
        elif 'W' in f[1] and tid == loop_tid: w_issue.append((t, f[4]))
    elif e == 'block:block_rq_complete':
        f = rest.split()
        if f[1] == 'FF': ff_done.append(t)
        elif 'W' in f[1]: w_done.setdefault(f[3], []).append(t)
    elif e == 'workqueue:workqueue_execute_start' and 'iomap_dio_complete_work' in rest:
        dio.append((t, cpu))
def after(lst, t):
    i = bisect.bisect_left(lst, t)
    return lst[i] if i < len(lst) else None
wi_t = [x[0] for x in w_issue]; dio_t = [x[0] for x in dio]
# the loop thread's state when the flush completed: on CPU, runnable (preempted), or asleep
sw = []  # (t, 'in'|'out', prev_state)
for t, comm, tid, cpu, e, rest in ev:
    if e == 'sched:sched_switch':
        if 'next_pid=%d ' % loop_tid in rest + ' ': sw.append((t, 'in', ''))
        m = re.search(r'prev_pid=(\d+) .*prev_state=(\S+)', rest)
        if m and int(m.group(1)) == loop_tid: sw.append((t, 'out', m.group(2)))
swt = [x[0] for x in sw]
def state(t):
    i = bisect.bisect_right(swt, t) - 1
    if i < 0: return '?'
    return 'on-cpu' if sw[i][1] == 'in' else ('runnable' if sw[i][2].startswith('R') else 'asleep')
rows = []
for ud, ts in subs.items():
    for t0 in ts:
        c = [x for x in comps.get(ud, []) if x > t0]
        if not c: continue
        t7 = c[0]; t6 = t7
        i = bisect.bisect_left(wi_t, t0)
        if i >= len(w_issue) or w_issue[i][0] > t6: continue
        t1, sec = w_issue[i]
        d = [x for x in w_done.get(sec, []) if x > t1]
        if not d or d[0] > t6: continue
        t2 = d[0]
        t3 = after(dio_t, t2)
        t4 = after(ff_issue, t3) if t3 else None
        t5 = after(ff_done, t4) if t4 else None
        if None in (t3, t4, t5) or t5 > t6: continue
        st = state(t5)
        rows.append((t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6, t7 - t0, st))
names = ['submit->W issued', 'W on device', 'W done->dio work', 'dio work->FF issued', 'FF on device', 'FF done->loop ran it', '(zero)', 'total']
print('batches paired: %d of %d submits' % (len(rows), sum(len(v) for v in subs.values())))
def pct(v, p): v = sorted(v); return v[min(len(v) - 1, int(p * len(v)))]
for k, n in enumerate(names):
    v = [r[k + 1] for r in rows]
    if n == '(zero)': continue
    print('  %-24s p50 %7.0f p90 %7.0f p99 %7.0f max %7.0f us  mean %6.0f' % (n, pct(v, .5), pct(v, .9), pct(v, .99), max(v), sum(v) / len(v)))
from collections import Counter
print('loop state at flush done, all:', Counter(r[-1] for r in rows))
for share in (.98, .90):
    cut = pct([r[-2] for r in rows], share)
    slow = [r for r in rows if r[-2] >= cut]
    print('slowest %d%% of commits (n %d, total >= %.0f us): mean per stage; loop state %s' % (round(100 - share * 100), len(slow), cut, dict(Counter(r[-1] for r in slow))))
    for k, n in enumerate(names):
        if n == '(zero)': continue
        print('  %-24s %7.0f us' % (n, sum(r[k + 1] for r in slow) / len(slow)))
for st in ('on-cpu', 'runnable', 'asleep'):
    v = [r[6] for r in rows if r[-1] == st]
    if v: print('FF done->loop ran it when %-8s n %5d p50 %6.0f p90 %6.0f p99 %6.0f us' % (st, len(v), pct(v, .5), pct(v, .9), pct(v, .99)))
# the asleep case, split at the loop's wake-up: FF done -> loop woken (the dio kworker resuming
# after the flush and completing the request) and woken -> ran (the loop's run-queue wait + enter)
wk = [t for t, comm, tid, cpu, e, rest in ev if e == 'sched:sched_wakeup' and ('pid=%d ' % loop_tid) in rest + ' ']
a1, a2 = [], []
for r in rows:
    if r[-1] != 'asleep': continue
    t5 = r[0] + sum(r[1:6]); t7 = t5 + r[6]
    w = after(wk, t5)
    if w is None or w > t7: continue
    a1.append(w - t5); a2.append(t7 - w)
if a1:
    print('asleep at flush done (n %d): FF done->loop woken p50 %.0f p90 %.0f p99 %.0f; woken->ran p50 %.0f p90 %.0f p99 %.0f us' % (len(a1), pct(a1, .5), pct(a1, .9), pct(a1, .99), pct(a2, .5), pct(a2, .9), pct(a2, .99)))
