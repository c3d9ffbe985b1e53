import { runCaptured } from '../test-support';

const run = runCaptured;

describe('ddpm info unet', () => {
  it('reports the official parameter counts', async () => {
    const cifar = JSON.parse((await run('info', 'unet', '--preset', 'cifar10', '--json')).stdout);
    expect(cifar.totalParams).toBe(35_746_307);
    expect(cifar.forwardFlopsPerImage / 1e9).toBeCloseTo(12.1, 1);
    expect(cifar.levels.map((l: { resolution: number; channels: number }) => [l.resolution, l.channels])).toEqual([
      [32, 128],
      [16, 256],
      [8, 256],
      [4, 256],
    ]);
    const celeba = JSON.parse((await run('info', 'unet', '--preset', 'celebahq256', '--json')).stdout);
    expect(celeba.totalParams).toBe(113_673_219);
    expect(celeba.paramsByBlock.find((b: { block: string }) => b.block === 'mid/attn_1').params).toBeGreaterThan(0);
  });

  it('prints a readable summary and rejects bad usage', async () => {
    const text = await run('info', 'unet', '--preset', 'tiny32');
    expect(text.status).toBe(0);
    expect(text.stdout).toContain('parameters: 1,624,323');
    expect((await run('info', 'unet')).stderr).toContain('--preset is required');
    expect((await run('info', 'unet', '--preset', 'big')).stderr).toContain('--preset must be one of cifar10, celebahq256');
    expect((await run('info', 'vae', '--preset', 'tiny32')).stderr).toContain('expected "ddpm info unet"');
  });
});

describe('ddpm bench unet', () => {
  it('prints JSON with train, sample and conv figures measured in one run, and their ratios', async () => {
    const { status, stdout } = await run('bench', 'unet', '--preset', 'micro32', '--batch', '2', '--steps', '1', '--json');
    expect(status).toBe(0);
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({ benchmark: 'unet', preset: 'micro32', batch: 2, backend: 'wasm' });
    for (const key of ['trainStep', 'sampleStep', 'convReference']) {
      expect(r[key].medianMs).toBeGreaterThan(0);
      expect(r[key].gflops).toBeGreaterThan(0);
    }
    expect(r.trainOverConv).toBeCloseTo(r.trainStep.gflops / r.convReference.gflops, 2);
    expect(r.sampleOverConv).toBeGreaterThan(0);
  }, 120_000);
});
