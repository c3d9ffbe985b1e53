/**
 * The V8 flags a Node process needs before it starts for our build with fused multiply-adds
 * (relaxed SIMD's f32x4.relaxed_madd): none where V8 ships relaxed SIMD (Node 22 and later), and
 * `--experimental-wasm-relaxed-simd` on Node 20, whose V8 11 compiles it only behind that flag.
 * Processes that run tensor work are started with these in their `execArgv` (the worker's job
 * processes, the benchmarks' ranks, the `ddpm` launcher); setting them after start-up is not
 * supported by Node. Tensor-free: the worker's own process reads this.
 */

/** A module of one function returning f32x4.relaxed_madd of three zero vectors. */
const RELAXED_MADD_PROBE = Uint8Array.from([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // magic, version 1
  ...[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b], // type section: one type, () -> v128
  ...[0x03, 0x02, 0x01, 0x00], // function section: one function of type 0
  ...[0x0a, 0x3d, 0x01, 0x3b, 0x00], // code section: one body of 59 bytes, no locals
  ...[0, 1, 2].flatMap(() => [0xfd, 0x0c, ...new Array<number>(16).fill(0)]), // v128.const 0, three times
  ...[0xfd, 0x85, 0x02, 0x0b], // f32x4.relaxed_madd, end
]);

const RELAXED_SIMD_FLAG = '--experimental-wasm-relaxed-simd';

interface WebAssemblyValidate {
  validate(bytes: Uint8Array): boolean;
}

/** Whether this process's V8 compiles relaxed SIMD (shipped, or its flag given at start-up). */
export function relaxedSimdCompiles(): boolean {
  return (globalThis as unknown as { WebAssembly: WebAssemblyValidate }).WebAssembly.validate(RELAXED_MADD_PROBE);
}

/**
 * The flags a tensor process needs at start-up: the relaxed-SIMD flag where this Node's V8 has it
 * but does not ship the feature (Node 20), whether or not this process was itself started with it;
 * else none (later V8s reject the flag).
 */
export function kernelV8Flags(): string[] {
  const shipped = !process.execArgv.includes(RELAXED_SIMD_FLAG) && relaxedSimdCompiles();
  return !shipped && Number(process.versions.v8.split('.')[0]) === 11 ? [RELAXED_SIMD_FLAG] : [];
}

/** `execArgv` (this process's by default) with {@link kernelV8Flags} added, each flag once. */
export function kernelExecArgv(execArgv: readonly string[] = process.execArgv): string[] {
  return [...execArgv, ...kernelV8Flags().filter((flag) => !execArgv.includes(flag))];
}
