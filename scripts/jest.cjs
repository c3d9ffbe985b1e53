#!/usr/bin/env node
/**
 * Runs jest (arguments passed on) in a Node started with the V8 flags our fused kernels need on
 * this Node (@ddpm/kernels/v8-flags: Node 20 compiles relaxed SIMD only behind a flag), so that
 * the tests run the arithmetic production runs. jest's workers inherit the flags. Without a build
 * of @ddpm/kernels yet, jest runs without them (the kernels then use their plain build).
 */
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

let execArgv = process.execArgv;
try {
  execArgv = require(path.join(__dirname, '..', 'packages', 'kernels', 'dist', 'v8-flags.js')).kernelExecArgv();
} catch {
  process.stderr.write('scripts/jest.cjs: @ddpm/kernels is not built; the kernels run their plain build\n');
}
const jest = require.resolve('jest/bin/jest');
const r = spawnSync(process.execPath, [...execArgv, jest, ...process.argv.slice(2)], {
  stdio: 'inherit',
});
if (r.error) throw r.error;
process.exitCode = r.status ?? 1;
