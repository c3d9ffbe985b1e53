/**
 * @ddpm/lab — the project's laboratory, beside the user's CLI: the benchmarks (`ddpm bench`), the
 * sample-quality study (`ddpm study`), the service demo (`ddpm service-demo`, the README's main
 * job), simulated hosts (`ddpm sim`) and the chaos run (`ddpm chaos`). The `ddpm` executable runs
 * these commands when this workspace is installed (the repository); a published CLI has none of
 * them. Private: never published.
 */
import { type CommandEntry } from '@ddpm/cli/toolkit';

import { BENCH_USAGE, benchCommand } from './commands/bench';
import { CHAOS_USAGE, chaosCommand } from './commands/chaos';
import { SERVICE_DEMO_USAGE, serviceDemoCommand } from './commands/service-demo';
import { SIM_USAGE, simCommand } from './commands/sim';
import { STUDY_USAGE, studyCommand } from './commands/study';

export { type ChaosOptions, type ChaosReport, runChaos } from './chaos/chaos';
export { FAULT_KINDS, type FaultKind } from './chaos/faults';
export { findOnPath, freePort } from './local-services';
export {
  type SimulatedHost,
  SimulatedHosts,
  type SimulatedHostsOptions,
  simulationUnavailable,
  sweepSimulatedHosts,
} from './sim/hosts';

/** The lab's commands, by name, as the `ddpm` executable lists and runs them. */
export const LAB_COMMANDS: Readonly<Record<string, CommandEntry>> = {
  bench: { run: benchCommand, usage: BENCH_USAGE, summary: 'benchmarks (JSON, ratios measured in the same run)' },
  'service-demo': {
    run: serviceDemoCommand,
    usage: SERVICE_DEMO_USAGE,
    summary: 'the main job: Redis, API, 2 workers, a train job over HTTP, a sample grid',
  },
  sim: {
    run: simCommand,
    usage: SIM_USAGE,
    summary: 'simulated hosts on this machine (root): a group across shaped links',
  },
  chaos: {
    run: chaosCommand,
    usage: CHAOS_USAGE,
    summary: 'a seeded chaos run on simulated hosts (root): jobs under faults, checked for loss',
  },
  study: {
    run: studyCommand,
    usage: STUDY_USAGE,
    summary: 'the sample-quality study: candidates for a training-time budget, curves and table into docs/',
  },
};
