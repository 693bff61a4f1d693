import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './paths';

export type ServiceName = 'api-gateway' | 'embedding-worker' | 'search-service';

/** Peak and current resident set size of a process, from /proc (MiB). */
export interface Rss {
  peakMiB: number;
  currentMiB: number;
}

export function readRss(pid: number | undefined): Rss | undefined {
  if (!pid) return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { peakMiB: kb('VmHWM') / 1024, currentMiB: kb('VmRSS') / 1024 };
  } catch {
    return undefined;
  }
}

/**
 * One service started from its build (`npm run build` first) as a real process, healthy once its
 * health URL answers. The benchmarks and the end-to-end tests both run the services this way.
 */
export class ServiceProcess {
  private child: ChildProcess | undefined;
  private output = '';

  constructor(
    readonly name: ServiceName,
    private readonly env: NodeJS.ProcessEnv,
    private readonly healthUrl: string,
  ) {}

  /**
   * `env`: settings over the constructor's for this start; `cpus`: run on these CPUs only, from the
   * start (`taskset -c`, e.g. "0").
   */
  async start(options: { env?: NodeJS.ProcessEnv; cpus?: string; timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 90_000;
    this.output = '';
    const main = [process.execPath, path.join(repoRoot, 'services', this.name, 'dist/main.js')];
    const command = options.cpus ? ['taskset', '-c', options.cpus, ...main] : main;
    const child = spawn(command[0]!, command.slice(1), {
      env: { ...this.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const collect = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-200_000);
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null)
        throw new Error(`${this.name} exited with ${child.exitCode}:\n${this.output.slice(-4000)}`);
      const ok = await fetch(this.healthUrl).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(
      `${this.name} did not become healthy within ${timeoutMs} ms:\n${this.output.slice(-4000)}`,
    );
  }

  /** Sends a signal and waits for the exit; returns the exit code (null when killed by the signal). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }

  rss(): Rss | undefined {
    return readRss(this.child?.pid);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get logs(): string {
    return this.output;
  }
}
