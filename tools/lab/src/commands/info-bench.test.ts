import { runCaptured } from '../../../../test/support/cli';

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
    expect((await run('info', 'unet', '--preset', 'big')).stderr).toContain(
      '--preset must be one of cifar10, celebahq256',
    );
    expect((await run('info', 'vae', '--preset', 'tiny32')).stderr).toContain('expected "ddpm info unet"');
  });
});

describe('ddpm bench unet', () => {
  it('prints JSON with train, sample and conv figures measured in one run, and their ratios', async () => {
    const { status, stdout } = await run(
      'bench',
      'unet',
      '--preset',
      'micro32',
      '--batch',
      '2',
      '--steps',
      '1',
      '--json',
    );
    expect(status).toBe(0);
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({ benchmark: 'unet', preset: 'micro32', batch: 2 });
    // The default backend: native where npm ci built our kernels for this CPU, else wasm.
    expect(['native', 'wasm']).toContain(r.backend);
    expect(typeof r.fusedMultiplyAdd).toBe('boolean');
    for (const key of ['trainStep', 'sampleStep', 'convReference']) {
      expect(r[key].medianMs).toBeGreaterThan(0);
      expect(r[key].gflops).toBeGreaterThan(0);
    }
    expect(r.trainOverConv).toBeCloseTo(r.trainStep.gflops / r.convReference.gflops, 2);
    expect(r.sampleOverConv).toBeGreaterThan(0);
    expect(r.profile).toBeUndefined();
  }, 120_000);

  it('--profile says where the time of a step goes, by phase and op kind, our own kernels included', async () => {
    const { status, stdout } = await run(
      'bench',
      'unet',
      '--preset',
      'micro32',
      '--batch',
      '2',
      '--steps',
      '1',
      '--profile',
    );
    expect(status).toBe(0);
    const { train, sample } = JSON.parse(stdout).profile;
    type Line = { phase: string; op: string; ms: number; share: number; calls: number; gflops?: number };
    const find = (p: { ops: Line[] }, phase: string, op: string): Line | undefined =>
      p.ops.find((o) => o.phase === phase && o.op === op);
    expect(Object.keys(train.byPhase).sort()).toEqual(['backward', 'forward', 'update']);
    expect(Object.keys(sample.byPhase)).toEqual(['sample']);
    // micro32: the 3×3 stride-1 convolutions with channels in lanes of four run as our Winograd
    // kernels (each with an input gradient, the same kernel, and a filter gradient); the first
    // (1 channel in) and the stride-2 ones as our direct kernels, forward and backward, the last
    // (1 out) as tfjs's conv2d with our composed filter gradient.
    const winograd = find(train, 'forward', 'ddpm:winogradConv')!;
    expect(winograd.calls).toBeGreaterThan(10);
    expect(winograd.gflops).toBeGreaterThan(0);
    expect(find(train, 'backward', 'ddpm:winogradConv')?.calls).toBe(winograd.calls);
    expect(find(train, 'backward', 'ddpm:winogradFilterProducts')?.calls).toBe(winograd.calls);
    expect(find(train, 'backward', 'ddpm:winogradFilterProducts')?.gflops).toBeGreaterThan(0);
    expect(find(sample, 'sample', 'ddpm:winogradConv')?.calls).toBe(winograd.calls);
    const direct = find(train, 'forward', 'ddpm:directConv')!;
    const forward = find(train, 'forward', 'FusedConv2D')!;
    const filterGrad = find(train, 'backward', 'Conv2D (filter gradient)')!;
    expect(direct.calls).toBe(3); // the first and the two downsampling convolutions
    expect(forward.calls).toBe(1); // the last
    expect(filterGrad.calls).toBe(1);
    expect(find(train, 'backward', 'ddpm:directConvGradients')?.calls).toBe(3);
    expect(direct.gflops).toBeGreaterThan(0);
    expect(forward.gflops).toBeGreaterThan(0);
    expect(find(train, 'forward', 'ddpm:groupNormForward')?.calls).toBeGreaterThan(0);
    expect(find(train, 'backward', 'ddpm:groupNormBackward')?.calls).toBe(
      find(train, 'forward', 'ddpm:groupNormForward')?.calls,
    );
    expect(find(sample, 'sample', 'ddpm:batchMatMul')?.gflops).toBeGreaterThan(0); // attention's products
    for (const p of [train, sample]) {
      const sum = p.ops.reduce((a: number, o: Line) => a + o.ms, 0);
      expect(Math.abs(sum - p.kernelsMs)).toBeLessThan(0.1 * p.ops.length + 1);
      expect(p.kernelsMs).toBeLessThanOrEqual(p.wallMs);
      expect(p.otherMs).toBeGreaterThanOrEqual(0);
    }
  }, 120_000);
});

describe('ddpm bench dp and allreduce', () => {
  it('trains a group of 2 beside one process, its gradients through shared memory or Redis, and says which', async () => {
    const shm = await run(
      'bench',
      'dp',
      '--preset',
      'micro32',
      '--batch',
      '4',
      '--workers',
      '2',
      '--steps',
      '1',
      '--rounds',
      '1',
      '--data-plane',
      'shm',
    );
    expect(shm.status).toBe(0);
    expect(JSON.parse(shm.stdout)).toMatchObject({
      benchmark: 'dp',
      workers: 2,
      transport: 'fp32',
      dataPlane: 'shared memory (/dev/shm)',
      speedup: expect.any(Number),
      ceiling: { imagesPerSecond: expect.any(Number), speedup: expect.any(Number) },
      groupOverCeiling: expect.any(Number),
    });
    const redis = await run('bench', 'allreduce', '--workers', '2', '--mb', '1', '--rounds', '2');
    expect(redis.status).toBe(0);
    expect(JSON.parse(redis.stdout)).toMatchObject({
      benchmark: 'allreduce',
      dataPlane: 'redis',
      busOverRaw: expect.any(Number),
      rawLeanRedisMBps: expect.any(Number),
      busOverRawLean: expect.any(Number),
    });
    const bad = await run('bench', 'dp', '--data-plane', 'carrier-pigeon');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--data-plane must be one of redis, shm/);
  });
});

describe('ddpm bench memory', () => {
  it('measures the peak heap of training steps in a fresh process, above which the budget estimate stays', async () => {
    const { status, stdout } = await run('bench', 'memory', '--cases', 'micro32:2,celebahq256:1', '--steps', '1');
    expect(status).toBe(0);
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({ benchmark: 'memory', steps: 1 });
    expect(['native', 'wasm']).toContain(r.backend);
    const [micro, celeba] = r.cases;
    expect(micro).toMatchObject({ preset: 'micro32', microBatch: 2, run: true });
    expect(micro.heapMiB).toBeGreaterThan(micro.heapAtStartMiB);
    expect(micro.estimateOverHeap).toBeGreaterThanOrEqual(1);
    expect(celeba).toEqual({
      preset: 'celebahq256',
      microBatch: 1,
      estimateMiB: expect.any(Number),
      run: false,
      why: "the estimate exceeds wasm32's 4 GiB heap",
    });
    expect((await run('bench', 'memory', '--cases', 'tiny32:0')).stderr).toContain(
      '--cases takes PRESET:BATCH pairs separated by commas',
    );
  }, 120_000);
});
