/**
 * The chaos run's check that the API's and the workers' memory stayed flat: their resident set
 * sampled through the run, the first quarter's median against the last quarter's.
 */
import { promises as fs } from 'node:fs';

import { type ChaosServices } from './services';

export type MemorySummary = Record<string, { firstMB: number; lastMB: number; flat: boolean }>;

export class MemorySamples {
  private readonly samples = new Map<string, number[]>();

  /** Notes the resident set of the API and of every live worker now. */
  async sample(services: ChaosServices): Promise<void> {
    await this.note('api', services.apiPid);
    for (const w of services.liveWorkers()) await this.note(`worker ${w.host} (pid ${w.pid})`, w.pid);
  }

  private async note(name: string, pid: number | undefined): Promise<void> {
    if (pid === undefined) return;
    const status = await fs.readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(status);
    if (kb) this.samples.set(name, [...(this.samples.get(name) ?? []), Number(kb[1]) / 1024]);
  }

  /** Each process with at least 4 samples: its memory early and late, and whether it stayed flat. */
  summary(): MemorySummary {
    const memory: MemorySummary = {};
    for (const [name, samples] of this.samples) {
      if (samples.length < 4) continue;
      // After the first quarter (loading, the first jobs), against the last.
      const quarter = Math.max(1, Math.floor(samples.length / 4));
      const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const first = median(samples.slice(quarter, 2 * quarter));
      const last = median(samples.slice(-quarter));
      memory[name] = { firstMB: Math.round(first), lastMB: Math.round(last), flat: last <= first * 1.25 + 16 };
    }
    return memory;
  }
}
