/**
 * Builds the web console into dist/: the script and the styles bundled and minified by esbuild,
 * each named by its content hash (dist/assets/app-<hash>.js, app-<hash>.css: cached for good by
 * browsers), and the shell dist/index.html that names them. Run by `npm run build` after tsc.
 * Prints the sizes, raw and gzipped, and refuses a build over the page-weight budget.
 */
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');

const esbuild = require('esbuild');

/** JS + CSS, gzipped: what a first visit downloads. */
const BUDGET_BYTES = 150 * 1024;
const root = __dirname;
const out = path.join(root, 'dist');

async function main() {
  const result = await esbuild.build({
    entryPoints: [path.join(root, 'src', 'main.tsx')],
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['es2022'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    write: false,
    outdir: 'out',
    entryNames: 'app',
    legalComments: 'none',
    logLevel: 'warning',
  });
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(path.join(out, 'assets'), { recursive: true });
  const names = {};
  let gzipped = 0;
  const sizes = {};
  for (const file of result.outputFiles) {
    const ext = path.extname(file.path).slice(1);
    const hash = createHash('sha256')
      .update(file.contents)
      .digest('base64url')
      .replace(/[^A-Za-z0-9]/g, '')
      .slice(0, 8)
      .toUpperCase();
    const name = `app-${hash.padEnd(8, '0')}.${ext}`;
    fs.writeFileSync(path.join(out, 'assets', name), file.contents);
    names[ext] = name;
    const gz = zlib.gzipSync(file.contents, { level: 9 }).length;
    gzipped += gz;
    sizes[name] = { bytes: file.contents.length, gzipped: gz };
  }
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ddpm console</title>
<link rel="stylesheet" href="/ui/assets/${names.css}">
<script type="module" src="/ui/assets/${names.js}"></script>
</head>
<body>
<div id="app"></div>
<noscript>The console needs JavaScript; the API itself is at /docs.</noscript>
</body>
</html>
`;
  fs.writeFileSync(path.join(out, 'index.html'), html);
  fs.writeFileSync(
    path.join(out, 'manifest.json'),
    JSON.stringify({ assets: sizes, gzippedTotal: gzipped }, null, 2) + '\n',
  );
  process.stdout.write(
    `console: ${Object.keys(sizes).join(', ')}: ${(gzipped / 1024).toFixed(1)} kB gzipped (budget ${BUDGET_BYTES / 1024} kB)\n`,
  );
  if (gzipped > BUDGET_BYTES) {
    process.stderr.write(
      `the console's page weight, ${gzipped} bytes gzipped, is over its budget of ${BUDGET_BYTES}\n`,
    );
    process.exit(1);
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
