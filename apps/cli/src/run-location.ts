/**
 * Where a run lives: `--out DIR` / `--checkpoint DIR` name a local run directory (a file:// store
 * whose root holds `checkpoints/`), or a URL (`file:///…`, `s3://…`); a path to one checkpoint
 * (`…/checkpoints/step-000001000`) selects that step.
 */
import * as path from 'node:path';

import { type ObjectStore, openStore } from '@ddpm/storage';

export interface RunLocation {
  readonly store: ObjectStore;
  readonly prefix: string;
  readonly step?: number;
}

export function runLocation(spec: string): RunLocation {
  const match = /^(.*)\/checkpoints\/step-(\d{9})\/?$/.exec(spec);
  if (match)
    return {
      store: openStore(match[1]!.includes('://') ? match[1]! : path.resolve(match[1]!)),
      prefix: '',
      step: Number(match[2]),
    };
  return { store: openStore(spec.includes('://') ? spec : path.resolve(spec)), prefix: '' };
}
