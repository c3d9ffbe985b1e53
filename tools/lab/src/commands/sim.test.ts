/**
 * `ddpm sim`: a wrong subcommand is refused with the usage; `ddpm sim up` brings up the API (with
 * its token) in the control namespace and a worker on every host, and Ctrl-C (its abort signal)
 * removes every namespace and link. The second part needs root, iproute2 and redis-server.
 */
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { runCli } from '@ddpm/cli';
import { runCaptured } from '../../../../test/support/cli';
import { simulationUnavailable } from '../sim/hosts';

jest.setTimeout(120_000);

it('ddpm sim refuses what it does not know, with its usage', async () => {
  const r = await runCaptured('sim', 'start');
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/expected "ddpm sim up" or "ddpm sim clean", got "ddpm sim start"[\s\S]*Usage: ddpm sim up/);
});

const unavailable = simulationUnavailable();
if (unavailable !== undefined) console.warn(`SKIPPED: ddpm sim up: ${unavailable}`);
(unavailable === undefined ? it : it.skip)(
  'ddpm sim up serves the API across 2 hosts until Ctrl-C, then leaves nothing behind',
  async () => {
    const out = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-sim-'));
    const abort = new AbortController();
    let stdout = '';
    const done = runCli(
      ['sim', 'up', '--hosts', '2', '--link-mbit', '400', '--out', out],
      { stdout: (t) => (stdout += t), stderr: () => undefined },
      { tty: false, signal: abort.signal },
    );
    try {
      for (let i = 0; i < 600 && !stdout.includes('"log"'); i++) await new Promise((r) => setTimeout(r, 100));
      const up = JSON.parse(stdout) as {
        api: string;
        token: string;
        hosts: { namespace: string; dataRedis: string }[];
      };
      expect(up.hosts.map((h) => h.dataRedis)).toEqual([
        expect.stringMatching(/^redis:\/\/10\.213\.\d+\.10:6380$/),
        expect.stringMatching(/^redis:\/\/10\.213\.\d+\.11:6380$/),
      ]);
      // The API answers with the token and refuses without it.
      expect((await fetch(`${up.api}/jobs`)).status).toBe(401);
      const listed = await fetch(`${up.api}/jobs`, { headers: { authorization: `Bearer ${up.token}` } });
      expect(listed.status).toBe(200);
      abort.abort();
      expect(await done).toBe(0);
      const names = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
      for (const h of up.hosts) expect(names).not.toContain(h.namespace);
    } finally {
      abort.abort();
      await done.catch(() => undefined);
      await fs.rm(out, { recursive: true, force: true });
    }
  },
);
