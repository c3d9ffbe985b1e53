/**
 * The chaos run's check that faults cost time and never bytes: each train configuration is
 * trained once without faults (one process, the same accumulation), and every completed run's
 * final checkpoint (weights, EMA, Adam) must have the reference's bytes.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { type Injected } from './injectors';
import { TRAIN_CONFIGS, type JobStream, type TrainConfigName, type Tracked, trainRequest } from './job-stream';
import { type ChaosLog, type ChaosServices } from './services';

const CHECKPOINT_FILES = ['model.safetensors', 'ema.safetensors', 'optimizer.safetensors'];

/** What the comparison reads and where it notes what it found. */
export interface ReferenceCheck {
  readonly stream: JobStream;
  readonly services: ChaosServices;
  readonly storeDir: string;
  readonly injected: readonly Injected[];
  readonly log: ChaosLog;
}

/**
 * Trains each configuration once without faults (one process, the same accumulation) and
 * compares every completed run's final checkpoint with it, byte for byte.
 */
export async function compareWithReferences(check: ReferenceCheck): Promise<string[]> {
  const { stream, log } = check;
  const differing: string[] = [];
  const references = new Map<TrainConfigName, Tracked>();
  for (const config of new Set(stream.completedTrain().map((j) => j.config!))) {
    references.set(config, await stream.submit('train', trainRequest(config, true), config, true));
    log(`fault-free reference of ${config}: ${references.get(config)!.id}`);
  }
  await stream.drain(10 * 60_000);
  for (const [config, reference] of references) {
    if (reference.result?.status !== 'completed') {
      differing.push(
        `the reference of ${config} (${reference.id}) did not complete: ${reference.error ?? reference.state}`,
      );
      continue;
    }
    differing.push(...(await differingFromReference(check, config, reference)));
  }
  return differing;
}

/** The completed runs of `config` whose final checkpoint differs from its completed `reference`'s. */
async function differingFromReference(
  check: ReferenceCheck,
  config: TrainConfigName,
  reference: Tracked,
): Promise<string[]> {
  const differing: string[] = [];
  const step = TRAIN_CONFIGS[config].steps;
  const read = (id: string, name: string): Promise<Buffer | undefined> =>
    fs
      .readFile(path.join(check.storeDir, 'runs', id, 'checkpoints', `step-${String(step).padStart(9, '0')}`, name))
      .catch(() => undefined);
  const expected = await Promise.all(CHECKPOINT_FILES.map((f) => read(reference.id, f)));
  for (const job of check.stream.completedTrain().filter((j) => j.config === config)) {
    const names: string[] = [];
    for (const [i, name] of CHECKPOINT_FILES.entries()) {
      const got = await read(job.id, name);
      const want = expected[i];
      if (got === undefined || want === undefined || !got.equals(want)) names.push(name);
    }
    if (names.length > 0)
      differing.push(
        `${job.id}: ${names.join(', ')} of step ${step} differ from the fault-free ${reference.id}${await whereItDiverged(check, job, reference)}`,
      );
  }
  return differing;
}

/**
 * For a run that differs: the first checkpoint both runs still hold whose weights differ (the
 * fault before it is the suspect), and the job's log and fault list saved next to the store.
 */
async function whereItDiverged(check: ReferenceCheck, job: Tracked, reference: Tracked): Promise<string> {
  const { storeDir } = check;
  const steps = async (id: string): Promise<string[]> =>
    (await fs.readdir(path.join(storeDir, 'runs', id, 'checkpoints')).catch(() => [] as string[])).sort();
  const ours = new Set(await steps(job.id));
  let first: string | undefined;
  for (const dir of await steps(reference.id)) {
    if (!ours.has(dir)) continue;
    const file = (id: string): Promise<Buffer | undefined> =>
      fs.readFile(path.join(storeDir, 'runs', id, 'checkpoints', dir, 'model.safetensors')).catch(() => undefined);
    const [a, b] = await Promise.all([file(job.id), file(reference.id)]);
    if (a === undefined || b === undefined || !a.equals(b)) {
      first = dir;
      break;
    }
  }
  const logs = await check.services.logsOf(job.id);
  const saved = path.join(path.dirname(storeDir), `differing-${job.id}.log`);
  const touched = check.injected.filter((f) => f.jobs.includes(job.id));
  await fs.writeFile(saved, `${logs}\nfaults:\n${touched.map((f) => JSON.stringify(f)).join('\n')}\n`);
  return `; ${first !== undefined ? `the first differing checkpoint both keep is ${first}` : 'the checkpoints both keep are equal'}; log and faults in ${saved}`;
}
