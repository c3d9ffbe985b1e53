/**
 * Our kernels' switches. Each turns one of our kernels off, to compare against what it replaces
 * (docs/kernels.md), or, for the fused multiply-add build, to get the same bits on every CPU. The
 * process that runs tensors sets them once at start-up from its configuration (`@ddpm/service`'s
 * `loadTensorSettings` reads them from the environment, `DDPM_WASM_KERNELS`, `DDPM_WASM_FMA` and
 * `DDPM_WINOGRAD` and `DDPM_KERNEL_THREADS`, and checks them); the kernels themselves read no
 * environment.
 */
export interface KernelSwitches {
  /** Our SIMD kernels on wasm; off, the U-Net runs tfjs's composed ops (and no Winograd). */
  readonly wasmKernels: boolean;
  /** The kernels' build with fused multiply-adds where it compiles; off, the plain build. */
  readonly wasmFma: boolean;
  /** Winograd F(2×2, 3×3) for 3×3 stride-1 convolutions; off, tfjs's direct convolution. */
  readonly winograd: boolean;
  /** Threads the native kernels use (the `native` backend), the caller's included. */
  readonly threads: number;
}

export const DEFAULT_KERNEL_SWITCHES: KernelSwitches = Object.freeze({
  wasmKernels: true,
  wasmFma: true,
  winograd: true,
  threads: 1,
});

let current: KernelSwitches = DEFAULT_KERNEL_SWITCHES;

/** The switches in force. */
export function kernelSwitches(): KernelSwitches {
  return current;
}

/** Changes some switches and returns the ones before, to restore them later. */
export function setKernelSwitches(changes: Partial<KernelSwitches>): KernelSwitches {
  const before = current;
  current = Object.freeze({ ...current, ...changes });
  return before;
}

/**
 * A condition that async work holds for its duration, process-wide and nesting: `run(fn)` holds it
 * while fn runs, and `active` says whether any run holds it now.
 */
export class ProcessScope {
  private depth = 0;

  get active(): boolean {
    return this.depth > 0;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    this.depth += 1;
    try {
      return await fn();
    } finally {
      this.depth -= 1;
    }
  }
}
