// The public surface: README.md's API table lists exactly the exports of 'voxvae' (ts/index.ts) and
// 'voxvae/web' (ts/web/index.ts), each with its kind. The entry points are explicit export lists (no
// `export *` but namespaces): their text gives every name, types included, and importing them gives the
// runtime values, which must be exactly the names not marked type.
import test from 'ava';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

interface Export {
  name: string;
  type: boolean;
}

/** The names an explicit export list declares: `export { a, type B, c as d } from`, `export type { … }`,
 *  `export * as ns from`. A bare `export *` is refused (the list must be explicit). */
function exportsOf(source: string, file: string): Export[] {
  const text = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  const out: Export[] = [];
  if (/export\s*\*\s*from/.test(text)) throw new Error(`${file}: 'export * from' re-exports whatever a module holds; list the names`);
  for (const m of text.matchAll(/export\s*\*\s*as\s+([A-Za-z_$][\w$]*)\s+from/g)) out.push({ name: m[1]!, type: false });
  for (const m of text.matchAll(/export\s+(type\s+)?\{([^}]*)\}/g)) {
    const allTypes = Boolean(m[1]);
    for (const raw of m[2]!.split(',')) {
      const item = raw.trim();
      if (!item) continue;
      const t = /^type\s+/.test(item);
      const spec = item.replace(/^type\s+/, '');
      const name = spec.split(/\s+as\s+/).pop()!.trim();
      out.push({ name, type: allTypes || t });
    }
  }
  if (/^\s*export\s+(const|let|function|class|interface|type\s+\w+\s*=|async)/m.test(text)) throw new Error(`${file}: declares exports of its own; entry points only re-export`);
  return out;
}

interface Row {
  name: string;
  kind: string;
  what: string;
}

/** README's API section: `### \`voxvae\`` and `### \`voxvae/web\`` and their table rows `| \`name\` | kind | what |`. */
function readmeTables(readme: string): Map<string, Row[]> {
  const start = readme.indexOf('\n## API\n');
  if (start < 0) throw new Error("README.md has no '## API' section");
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const tables = new Map<string, Row[]>();
  let entry: string | null = null;
  for (const line of section.split('\n')) {
    const h = /^###\s+`([^`]+)`/.exec(line);
    if (h) {
      entry = h[1]!;
      tables.set(entry, []);
      continue;
    }
    const r = /^\|\s*`([A-Za-z_$][\w$]*)`\s*\|\s*([a-z]+)\s*\|\s*(.*?)\s*\|\s*$/.exec(line);
    if (r && entry) tables.get(entry)!.push({ name: r[1]!, kind: r[2]!, what: r[3]! });
  }
  return tables;
}

const ENTRIES = [
  { entry: 'voxvae', file: 'ts/index.ts', load: () => import('../ts/index.js') },
  { entry: 'voxvae/web', file: 'ts/web/index.ts', load: () => import('../ts/web/index.js') },
] as const;

for (const { entry, file, load } of ENTRIES) {
  test(`README's API table lists exactly the exports of '${entry}', with their kinds`, async (t) => {
    const [readme, source, mod] = await Promise.all([readFile(path.join(ROOT, 'README.md'), 'utf8'), readFile(path.join(ROOT, file), 'utf8'), load()]);
    const exported = exportsOf(source, file);
    const rows = readmeTables(readme).get(entry);
    if (!rows) return t.fail(`README.md's API section has no '### \`${entry}\`' table`);

    const names = new Set(exported.map((e) => e.name));
    t.is(names.size, exported.length, `${file} exports a name twice`);
    const listed = new Map<string, Row>();
    const twice = rows.filter((r) => listed.has(r.name) || !listed.set(r.name, r));
    t.deepEqual(twice.map((r) => r.name), [], `README lists these twice under ${entry}`);
    t.deepEqual([...names].filter((n) => !listed.has(n)), [], `exported from ${file} but missing from README's ${entry} table`);
    t.deepEqual([...listed.keys()].filter((n) => !names.has(n)), [], `in README's ${entry} table but not exported from ${file}`);
    t.deepEqual(rows.filter((r) => !r.what).map((r) => r.name), [], 'every row says what the export is');

    // The runtime values are exactly the exports not marked type, and the README's kinds agree.
    const values = new Set(Object.keys(mod));
    t.deepEqual([...values].filter((n) => !names.has(n)).sort(), [], 'runtime exports the list does not name');
    for (const e of exported) {
      const row = listed.get(e.name);
      if (e.type) {
        t.false(values.has(e.name), `${e.name} is marked type but is a value`);
        if (row) t.is(row.kind, 'type', `${e.name}: README kind`);
        continue;
      }
      t.true(values.has(e.name), `${e.name} is not a runtime export of ${file}`);
      const v = (mod as Record<string, unknown>)[e.name];
      const kind = typeof v === 'function' ? (/^class[\s{]/.test(Function.prototype.toString.call(v)) ? 'class' : 'function') : typeof v === 'object' && v !== null && Object.prototype.toString.call(v) === '[object Module]' ? 'namespace' : 'constant';
      if (row) t.is(row.kind, kind, `${e.name}: README says ${row.kind}, it is a ${kind}`);
    }
  });
}

test('plumbing stays out of the public surface', async (t) => {
  const mod = (await import('../ts/index.js')) as Record<string, unknown>;
  for (const name of ['buildEncoder', 'buildDecoder', 'buildDiscriminator', 'buildResNetV2Encoder', 'buildResNetV2Decoder', 'activate', 'writeFileAtomic', 'resolveBetaSpec', 'completeFile'])
    t.false(name in mod, `${name} is exported`);
  const web = (await import('../ts/web/index.js')) as Record<string, unknown>;
  t.false('WasmLatentMode' in web);
});
