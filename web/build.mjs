// Builds the browser app into a static folder (default web/dist/): esbuild bundles web/src/main.ts with
// voxvae/web, ts/data's NIfTI/NRRD codecs (with the browser shims of web/src/shims for the few Node
// modules they import) and Niivue; the WebAssembly modules, the shipped model and the example skulls are
// copied beside it. Nothing is fetched from the network at run time: every asset is in the folder.
// Usage: node web/build.mjs [outdir] [--dev]   (npm run app builds and serves; npm run app:build builds)
import { build } from 'esbuild';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const WEB = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(WEB, '..');
const SHIMS = path.join(WEB, 'src/shims');

/** Redirects the Node modules ts/data imports to the browser shims; anything else Node-only fails the build. */
const browserShims = {
  name: 'voxvae-browser-shims',
  setup(b) {
    const node = { 'node:os': 'node_os.ts', 'node:fs': 'node_fs.ts', 'node:path': 'node_path.ts' };
    b.onResolve({ filter: /^node:/ }, (args) => {
      const shim = node[args.path];
      if (shim) return { path: path.join(SHIMS, shim) };
      return { errors: [{ text: `${args.path} (imported by ${path.relative(ROOT, args.importer)}) has no browser shim in web/src/shims` }] };
    });
    b.onResolve({ filter: /^\.\/(gzip|atomic)\.js$/ }, (args) => {
      if (path.dirname(args.importer) !== path.join(ROOT, 'ts/data')) return undefined;
      return { path: path.join(SHIMS, args.path.slice(2).replace(/\.js$/, '.ts')) };
    });
  },
};

/** The example skulls shipped in web/examples (name, defect class from the folder), for the page's list. */
async function exampleList() {
  const out = [];
  for (const defect of (await readdir(path.join(WEB, 'examples'), { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort()) {
    const files = (await readdir(path.join(WEB, 'examples', defect))).sort();
    for (const f of files.filter((f) => /\.(nii|nii\.gz|nrrd)$/.test(f) && !f.includes('.implant.'))) {
      // NNN.implant.nii.gz beside NNN.nii.gz: the true implant, for the Dice the app reports.
      const truth = f.replace(/\.(nii\.gz|nii|nrrd)$/, '.implant.$1');
      out.push({ name: `${defect} ${f.replace(/\.(nii\.gz|nii|nrrd)$/, '')}`, defect, url: `examples/${defect}/${f}`, truth: files.includes(truth) ? `examples/${defect}/${truth}` : null });
    }
  }
  return out;
}

export async function buildApp({ outdir = path.join(WEB, 'dist'), dev = false } = {}) {
  await rm(outdir, { recursive: true, force: true });
  await mkdir(outdir, { recursive: true });
  const result = await build({
    entryPoints: [path.join(WEB, 'src/main.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    outdir,
    entryNames: 'app',
    chunkNames: 'chunks/[name]-[hash]',
    // Niivue's Zarr codecs (1.4 MB) are dynamic imports: split into chunks that load only if ever used.
    splitting: true,
    minify: !dev,
    sourcemap: dev ? 'inline' : false,
    metafile: true,
    logLevel: 'warning',
    legalComments: 'linked',
    inject: [path.join(SHIMS, 'buffer.ts')],
    plugins: [browserShims],
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  await cp(path.join(WEB, 'index.html'), path.join(outdir, 'index.html'));
  await cp(path.join(WEB, 'app.css'), path.join(outdir, 'app.css'));
  await cp(path.join(ROOT, 'native/wasm/dist'), path.join(outdir, 'wasm'), { recursive: true });
  await cp(path.join(WEB, 'models'), path.join(outdir, 'models'), { recursive: true });
  await cp(path.join(WEB, 'examples'), path.join(outdir, 'examples'), { recursive: true });
  await writeFile(path.join(outdir, 'examples/index.json'), JSON.stringify(await exampleList(), null, 1));
  // The static host needs these headers for the threaded build (cross-origin isolation); Netlify and
  // Cloudflare Pages read _headers. Without them the app runs on one thread and says so.
  await writeFile(path.join(outdir, '_headers'), '/*\n  Cross-Origin-Opener-Policy: same-origin\n  Cross-Origin-Embedder-Policy: require-corp\n');
  const outputs = Object.entries(result.metafile.outputs);
  const bundleBytes = outputs.filter(([f]) => f.endsWith('/app.js')).reduce((a, [, o]) => a + o.bytes, 0);
  const chunkBytes = outputs.filter(([f]) => f.includes('/chunks/')).reduce((a, [, o]) => a + o.bytes, 0);
  return { outdir, bundleBytes, chunkBytes, metafile: result.metafile };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const dev = args.includes('--dev');
  const out = args.find((a) => !a.startsWith('--'));
  const r = await buildApp({ outdir: out ? path.resolve(out) : undefined, dev });
  console.log(`voxvae app: built ${path.relative(process.cwd(), r.outdir) || '.'} (app.js ${(r.bundleBytes / 1e6).toFixed(2)} MB; chunks/ ${(r.chunkBytes / 1e6).toFixed(2)} MB, mostly Niivue's Zarr codecs, which the app never loads${dev ? '; dev build' : ''})`);
}
