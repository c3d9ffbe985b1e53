#!/usr/bin/env node
// Committed launcher so npm links the `ddpm` bin at install time, before `npm run build` has
// produced dist/ (npm skips bins whose target does not exist yet). Where this Node needs V8 flags
// for the fused kernels (Node 20: @ddpm/kernels/v8-flags), it runs the CLI in a process started
// with them, passing its exit status on; otherwise it runs the CLI in this process.
'use strict';
const { kernelExecArgv } = require('@ddpm/kernels/v8-flags');

const execArgv = kernelExecArgv();
const main = require.resolve('../dist/main.js');
if (execArgv.length === process.execArgv.length) {
  require(main);
} else {
  const { spawn } = require('node:child_process');
  const child = spawn(process.execPath, [...execArgv, main, ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  // The terminal's Ctrl-C reaches the CLI itself (one process group); a SIGTERM sent to this
  // launcher is passed on. Either way the CLI decides how to stop, and its status is ours.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  child.on('exit', (code, signal) => {
    if (signal !== null) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else process.exit(code ?? 1);
  });
}
