import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { nowMs } from './stats';

/** Linux reports process CPU time in ticks of USER_HZ, which is 100 on every architecture it runs. */
const TICK_MS = 10;

/** Who spent the CPU: this process, the stack's services, and the servers they share. */
export const CPU_GROUPS = [
  'bench',
  'embedding-worker',
  'api-gateway',
  'search-service',
  'postgres',
  'redis',
  'chroma',
] as const;
export type CpuGroup = (typeof CPU_GROUPS)[number];

export interface CpuSnapshot {
  atMs: number;
  /** CPU time the whole machine spent busy (user, nice, system, irq, softirq; not idle or steal). */
  busyMs: number;
  groups: Record<CpuGroup, number>;
}

/** CPU time spent between two snapshots: by group, by the whole machine, and the wall time. */
export interface CpuSpent {
  wallMs: number;
  busyMs: number;
  ms: Record<CpuGroup, number>;
}

interface Proc {
  comm: string;
  /** utime + stime of the process itself. */
  ticks: number;
  /** cutime + cstime: the CPU time of exited children it waited for. */
  childTicks: number;
}

/** Every process id in /proc; throws where there is no /proc. */
function allPids(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}

function readProc(pid: number): Proc | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm is in parentheses and may hold spaces: the fields after it are counted from its end.
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return {
      comm,
      ticks: Number(f[11]) + Number(f[12]),
      childTicks: Number(f[13]) + Number(f[14]),
    };
  } catch {
    return undefined; // the process exited while we listed them
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

function machineBusyMs(): number {
  const [, user, nice, system, , , irq, softirq] = readFileSync('/proc/stat', 'utf8')
    .split('\n', 1)[0]!
    .trim()
    .split(/\s+/)
    .map(Number);
  return (user! + nice! + system! + irq! + softirq!) * TICK_MS;
}

/**
 * CPU time used so far by each group, from /proc; undefined where there is no /proc (not Linux).
 * PostgreSQL counts every `postgres` process plus the exited backends and workers its processes
 * waited for, so connections that close during a run still count. `services` are the pids of the
 * stack's own services: other stacks running at the same time are not counted.
 */
export function cpuSnapshot(services: Partial<Record<CpuGroup, number>>): CpuSnapshot | undefined {
  let pids: number[];
  try {
    pids = allPids();
  } catch {
    return undefined;
  }
  const groups = Object.fromEntries(CPU_GROUPS.map((g) => [g, 0])) as Record<CpuGroup, number>;
  const own = new Map(Object.entries(services).map(([name, pid]) => [pid, name as CpuGroup]));
  for (const pid of pids) {
    const proc = readProc(pid);
    if (!proc) continue;
    const service = own.get(pid);
    if (service) groups[service] += proc.ticks * TICK_MS;
    else if (proc.comm === 'postgres') groups.postgres += (proc.ticks + proc.childTicks) * TICK_MS;
    else if (proc.comm === 'redis-server') groups.redis += proc.ticks * TICK_MS;
    else if (proc.comm === 'node' && /[/ ]chroma run /.test(cmdline(pid)))
      groups.chroma += proc.ticks * TICK_MS;
  }
  const usage = process.cpuUsage();
  groups.bench = (usage.user + usage.system) / 1000;
  return { atMs: nowMs(), busyMs: machineBusyMs(), groups };
}

export function cpuSince(before: CpuSnapshot, after: CpuSnapshot): CpuSpent {
  return {
    wallMs: after.atMs - before.atMs,
    busyMs: after.busyMs - before.busyMs,
    ms: Object.fromEntries(CPU_GROUPS.map((g) => [g, after.groups[g] - before.groups[g]])) as Record<
      CpuGroup,
      number
    >,
  };
}

/** The pids of the local PostgreSQL (every process) and Redis servers. */
export function serverPids(): number[] {
  return allPids().filter((pid) => {
    const comm = readProc(pid)?.comm;
    return comm === 'postgres' || comm === 'redis-server';
  });
}

/**
 * Restricts processes, every thread of each, to the given CPUs (`taskset -a -p -c`). Processes they
 * start later (PostgreSQL's new backends) inherit it. A process that exited meanwhile is skipped.
 */
export function pinToCpus(pids: number[], cpus: string): void {
  for (const pid of pids) {
    try {
      execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
    } catch (error) {
      if (readProc(pid)) throw error;
    }
  }
}
