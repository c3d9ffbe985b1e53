import * as tf from '@tensorflow/tfjs-core';

/** A fresh copy of the module, so each test starts with no backend chosen. */
function fresh(): typeof import('./index') {
  let mod: typeof import('./index') | undefined;
  jest.isolateModules(() => {
    mod = require('./index') as typeof import('./index');
  });
  return mod!;
}

describe('initBackend', () => {
  it('falls back past the absent TensorFlow packages to our native kernels (or wasm where they are not built) and says why', async () => {
    const mod = fresh();
    const built = mod.nativeBuild(true);
    const info = await mod.initBackend();
    expect(info.skipped[0]!.reason).toMatch(/Cannot find module '@tensorflow\/tfjs-node-gpu'/);
    expect(info.wasmSimd).toBe(true);
    expect(tf.getBackend()).toBe('wasm');
    if (typeof built === 'object') {
      expect(info).toMatchObject({ name: 'native', nativeIsa: built.isa });
      expect(info.skipped.map((s) => s.name)).toEqual(['tensorflow-gpu', 'tensorflow']);
    } else {
      expect(info.name).toBe('wasm');
      expect(info.skipped.map((s) => s.name)).toEqual(['tensorflow-gpu', 'tensorflow', 'native']);
      expect(info.skipped[2]!.reason).toBe(built);
    }
  });

  it('honours the backend asked for and is idempotent', async () => {
    const { initBackend, currentBackend } = fresh();
    const info = await initBackend({ backend: 'cpu' });
    expect(info).toMatchObject({ name: 'cpu', tfBackend: 'cpu', skipped: [] });
    expect(await initBackend({ backend: 'wasm' })).toBe(info);
    expect(currentBackend()).toBe(info);
  });

  it('fails clearly when a forced backend cannot load or does not exist', async () => {
    await expect(fresh().initBackend({ backend: 'tensorflow-gpu' })).rejects.toThrow(
      /backend tensorflow-gpu could not be loaded \(@tensorflow\/tfjs-node-gpu\).*npm install @tensorflow\/tfjs-node-gpu@4.22.0/,
    );
    await expect(fresh().initBackend({ backend: 'tpu' })).rejects.toThrow(
      'backend "tpu" is not one of tensorflow-gpu, tensorflow, native, wasm, cpu',
    );
  });

  it('registers gradients', () => {
    fresh();
    expect(tf.getGradient('Conv2D')).toBeDefined();
    expect(tf.getGradient('Mean')).toBeDefined();
  });
});
