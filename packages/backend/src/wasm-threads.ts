/**
 * The threaded build of tfjs-backend-wasm (`tfjs-backend-wasm-threaded-simd.wasm`: XNNPACK with a
 * pthreads pool) in Node, where tfjs turns it off (https://github.com/tensorflow/tfjs/issues/3830).
 *
 * Its Emscripten glue already runs under Node (it takes `worker_threads.Worker` as `Worker`, and
 * the pthread worker script reads its scripts with `fs`). Three things stand in the way, all on
 * tfjs's side of the glue:
 *
 * 1. the `WASM_HAS_MULTITHREAD_SUPPORT` flag is false whenever `IS_NODE`;
 * 2. the pthread worker's script and the module's own source reach the workers as Blob URLs,
 *    which `worker_threads` cannot load;
 * 3. that source is the factory's `toString()` from tfjs's bundle, whose free names (the bundle's
 *    `commonjsGlobal` and `require$$N` modules, TypeScript's `__values` and friends, the enclosing
 *    `_scriptDir`) do not exist where a worker evaluates it.
 *
 * So, before the backend initialises: the flag is set; Blobs made from those two scripts are
 * written to files (with a prelude that defines the missing names) and their object URLs are those
 * files' paths; and the module source posted to a starting worker is that path rather than the
 * Blob. Nothing else changes: other Blobs and URLs, and other workers' messages, pass untouched.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as workerThreads from 'node:worker_threads';

/** How each script tfjs makes a Blob of begins: the pthread worker, and the module factory. */
const WORKER_SCRIPT_START = '"use strict";var Module={};';
const MODULE_SCRIPT_START = 'var WasmBackendModuleThreadedSimd = ';

/** Free names of the factory's source, defined where the worker evaluates it (global scope). */
function prelude(file: string): string {
  return [
    'var commonjsGlobal = globalThis;',
    // The bundle's names for the Node modules the glue uses.
    'var require$$0 = require("fs"), require$$1 = require("path"), require$$3 = require("perf_hooks"), require$$4 = require("os");',
    `var _scriptDir = ${JSON.stringify(file)};`,
    `var __filename = ${JSON.stringify(file)};`,
    `var __dirname = ${JSON.stringify(path.dirname(file))};`,
    // TypeScript's downlevel helpers, as tfjs's bundle compiled the glue with them.
    'var __values = function (o) { var s = typeof Symbol === "function" && Symbol.iterator, m = s && o[s], i = 0; if (m) return m.call(o); if (o && typeof o.length === "number") return { next: function () { if (o && i >= o.length) o = void 0; return { value: o && o[i++], done: !o }; } }; throw new TypeError(s ? "Object is not iterable." : "Symbol.iterator is not defined."); };',
    'var __read = function (o, n) { var m = typeof Symbol === "function" && o[Symbol.iterator]; if (!m) return o; var i = m.call(o), r, ar = []; while ((n === void 0 || n-- > 0) && !(r = i.next()).done) ar.push(r.value); return ar; };',
    'var __spreadArray = function (to, from, pack) { return to.concat(Array.prototype.slice.call(from)); };',
    'var __awaiter = function (thisArg, _arguments, P, generator) { return new (P || (P = Promise))(function (resolve, reject) { var it = generator.apply(thisArg, _arguments || []); function step(method, arg) { var r; try { r = it[method](arg); } catch (e) { reject(e); return; } if (r.done) resolve(r.value); else Promise.resolve(r.value).then(function (v) { step("next", v); }, function (e) { step("throw", e); }); } step("next", undefined); }); };',
    '',
  ].join('\n');
}

let installed: { dir: string } | undefined;
let sharedMemory: object | undefined;

/** The threaded build's shared memory, once its first worker has been started (else undefined). */
export function threadedWasmMemory(): object | undefined {
  return sharedMemory;
}

/**
 * Makes the threaded wasm build loadable in this process; call before the wasm backend is first
 * set. Idempotent.
 */
export function installWasmThreads(): void {
  if (installed !== undefined) return;
  const dir = mkdtempSync(path.join(tmpdir(), 'ddpm-wasm-threads-'));
  installed = { dir };
  // The pool's workers read the scripts as they start (all eight at initialisation); nothing is left behind.
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  let files = 0;
  const NativeBlob = globalThis.Blob;
  const paths = new WeakMap<object, string>();
  class ScriptBlob extends NativeBlob {
    constructor(parts: ConstructorParameters<typeof Blob>[0] = [], options?: ConstructorParameters<typeof Blob>[1]) {
      super(parts, options);
      const text = parts.length === 1 && typeof parts[0] === 'string' ? parts[0] : undefined;
      if (text !== undefined && (text.startsWith(WORKER_SCRIPT_START) || text.startsWith(MODULE_SCRIPT_START))) {
        const file = path.join(dir, `script-${files++}.js`);
        writeFileSync(file, prelude(file) + text);
        paths.set(this, file);
      }
    }
  }
  globalThis.Blob = ScriptBlob;
  const createObjectURL = URL.createObjectURL.bind(URL);
  URL.createObjectURL = (blob: Blob) => paths.get(blob) ?? createObjectURL(blob);
  // eslint-disable-next-line @typescript-eslint/unbound-method -- kept to be called with the worker as `this` below
  const postMessage = workerThreads.Worker.prototype.postMessage;
  workerThreads.Worker.prototype.postMessage = function (
    this: workerThreads.Worker,
    message: unknown,
    transfer?: readonly workerThreads.TransferListItem[],
  ) {
    const m = message as { cmd?: unknown; urlOrBlob?: unknown; wasmMemory?: unknown } | null;
    if (
      m !== null &&
      typeof m === 'object' &&
      m.cmd === 'load' &&
      typeof m.urlOrBlob === 'object' &&
      m.urlOrBlob !== null &&
      paths.has(m.urlOrBlob)
    ) {
      message = { ...m, urlOrBlob: paths.get(m.urlOrBlob) };
      // The glue keeps its shared memory to itself; each starting worker is sent it.
      const { Memory } = (
        globalThis as unknown as { WebAssembly: { Memory: abstract new (...args: never[]) => object } }
      ).WebAssembly;
      if (m.wasmMemory instanceof Memory) sharedMemory = m.wasmMemory;
    }
    return postMessage.call(this, message, transfer);
  };
}
