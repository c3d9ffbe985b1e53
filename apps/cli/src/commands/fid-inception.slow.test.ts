/**
 * `ddpm fid --extractor inception_fid` with weights converted from a PyTorch state dict by
 * scripts/convert-fid-inception.py (slow tier: it starts PyTorch). Skipped, saying so, without
 * python3-torch and python3-torchvision.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { initBackend } from '@ddpm/kernels';
import { statisticsFromNpz } from '@ddpm/eval';
import sharp from 'sharp';

import { PYTHON, describeWithPython } from '../../../../test/support/python';
import { runCaptured as run } from '../../../../test/support/cli';

jest.setTimeout(300_000);

const ROOT = path.join(__dirname, '..', '..', '..', '..');

describeWithPython(['torch', 'torchvision'], 'apt-get install python3-torch python3-torchvision')(
  'ddpm fid --extractor inception_fid',
  () => {
    let dir: string;
    beforeAll(async () => {
      process.env['DDPM_BACKEND'] = 'wasm';
      await initBackend({ backend: 'wasm' });
      dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-cli-inception-'));
    });
    afterAll(async () => {
      await fs.rm(dir, { recursive: true, force: true });
    });

    it('takes converted weights from the cache, and names the distance after their provenance', async () => {
      const folder = path.join(dir, 'rgb');
      await fs.mkdir(folder);
      for (let i = 0; i < 3; i++) {
        await sharp(Buffer.from(Array.from({ length: 16 * 16 * 3 }, (_, k) => (k * (i + 3)) % 256)), {
          raw: { width: 16, height: 16, channels: 3 },
        })
          .png()
          .toFile(path.join(folder, `${i}.png`));
      }
      // Random torchvision weights, saved as pytorch-fid's file is and converted by the script.
      const cacheDir = path.join(dir, 'inception-cache');
      const pth = path.join(dir, 'random.pth');
      execFileSync(
        PYTHON,
        [
          path.join(ROOT, 'packages', 'eval', 'scripts', 'torchvision_inception_reference.py'),
          path.join(dir, 'ref.safetensors'),
          '1',
          pth,
        ],
        { stdio: 'pipe' },
      );
      await fs.mkdir(path.join(cacheDir, 'extractors'), { recursive: true });
      execFileSync(
        PYTHON,
        [
          path.join(ROOT, 'scripts', 'convert-fid-inception.py'),
          pth,
          path.join(cacheDir, 'extractors', 'inception_fid.safetensors'),
        ],
        { stdio: 'pipe' },
      );
      // 2048-d statistics of the folder (a distance between two such sets is frechet.test.ts's business).
      const npz = path.join(dir, 'rgb.npz');
      const saved = await run('fid', '--save-stats', folder, npz, '--extractor', 'inception_fid', '--cache', cacheDir);
      expect(saved.status).toBe(0);
      // Not the published weights: never called FID.
      expect(saved.stderr).toMatch(
        /was not converted from the published FID weights \(sha256 prefix 6726825d\); its distance is reported as fd_inception_unverified, not fid/,
      );
      const stats = statisticsFromNpz(new Uint8Array(await fs.readFile(npz)));
      expect([stats.dim, stats.count]).toEqual([2048, 3]);
    });
  },
);
