// The one report writer (used by `voxvae pipeline` and `voxvae evaluate`): a report is Markdown lines,
// its figures (SVG rendered to PNG) and a JSON payload. It writes report.md (figures as PNG files beside
// it), report.html (self-contained: every figure embedded as a data: URI, so the file can be mailed or
// archived alone) and results.json. At the top of each: the run's command, seed, version, machine and
// date, then warning boxes — those the caller gives (e.g. a collapsed model) and one listing every
// non-finite number of the payload, which a table would otherwise show as a silent dash.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../safetensors.js';
import { writePng } from './plot.js';

/** The package's version (package.json two folders up from ts/report and dist/report). */
export const VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();

export interface RunInfo {
  /** The command line that produced the report. */
  command: string;
  seed?: number;
  version: string;
  machine: string;
  /** ISO date of the run. */
  date: string;
  seconds?: number;
}

export interface ReportFigure {
  /** PNG file name, relative to the report folder. */
  file: string;
  /** The figure, rendered to `file`; absent when the caller has written the PNG already. */
  svg?: string;
  caption: string;
}

export interface ReportInput {
  title: string;
  run: RunInfo;
  /** The verdict lines printed first (and by the command). */
  summary?: string[];
  warnings?: string[];
  /** The body, Markdown: headings (#, ##, ###), paragraphs, `- ` lists, pipe tables, and `{{figure:FILE}}` where a figure goes. */
  body: string[];
  figures?: ReportFigure[];
  /** results.json's payload (the run info and warnings are added). */
  json: Record<string, unknown>;
}

/** The machine, for reports: CPU model and count, memory, Node and platform. */
export function machineInfo(): string {
  const c = cpus();
  return `${c[0]?.model.trim() ?? 'unknown CPU'} × ${c.length}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB RAM, Node ${process.version}, ${process.platform}-${process.arch}`;
}

/** RunInfo for this process: the command as typed (argv after node), version and machine. */
export function runInfo(version: string = VERSION, seed?: number, seconds?: number): RunInfo {
  const argv = process.argv.slice(1).map((a, i) => (i === 0 ? 'voxvae' : /[\s'"$`\\]/.test(a) ? `'${a.replace(/'/g, "'\\''")}'` : a));
  return { command: argv.join(' '), ...(seed !== undefined ? { seed } : {}), version, machine: machineInfo(), date: new Date().toISOString(), ...(seconds !== undefined ? { seconds } : {}) };
}

/** Paths of the non-finite numbers in a JSON-able value (NaN, ±Infinity), e.g. 'models[1].heldOutDice'. */
export function nonFinitePaths(v: unknown, at = '', out: string[] = []): string[] {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) out.push(`${at || '(value)'} = ${v}`);
  } else if (Array.isArray(v)) v.forEach((x, i) => nonFinitePaths(x, `${at}[${i}]`, out));
  else if (v && typeof v === 'object' && !ArrayBuffer.isView(v)) for (const [k, x] of Object.entries(v)) nonFinitePaths(x, at ? `${at}.${k}` : k, out);
  return out;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const inline = (s: string): string => esc(s).replace(/\*\*(.+?)\*\*/g, '<b>$1</b>').replace(/`([^`]+)`/g, '<code>$1</code>');

function mdTable(lines: string[]): string {
  const rows = lines.map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
  const align = rows[1] && rows[1].every((c) => /^:?-+:?$/.test(c)) ? rows[1].map((c) => (c.endsWith(':') ? 'right' : 'left')) : null;
  const body = align ? [rows[0]!, ...rows.slice(2)] : rows;
  const td = (c: string, j: number, tag: 'td' | 'th'): string => `<${tag}${align?.[j] === 'right' ? ' class="num"' : ''}>${inline(c)}</${tag}>`;
  return `<div class="table"><table><thead><tr>${body[0]!.map((c, j) => td(c, j, 'th')).join('')}</tr></thead><tbody>${body.slice(1).map((r) => `<tr>${r.map((c, j) => td(c, j, 'td')).join('')}</tr>`).join('')}</tbody></table></div>`;
}

const CSS = `body{font-family:"DejaVu Sans",sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222;line-height:1.4}
.run{font-size:.85em;color:#444;background:#f4f6f8;border:1px solid #d0d7de;padding:.5em .8em;border-radius:4px}
.run dt{font-weight:bold;float:left;clear:left;width:6em}.run dd{margin-left:6.5em;word-break:break-all}
.warn{background:#fff3cd;border:1px solid #e0b000;border-left:6px solid #e0b000;padding:.6em .8em;margin:.8em 0}
.summary{background:#eef6ee;border:1px solid #9c9;padding:.6em .8em}
.table{overflow-x:auto}table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f6f8}
figure{margin:1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.9em;color:#333;max-width:900px}
code{background:#f4f6f8;padding:0 .2em}`;

/** Writes report.md, report.html and results.json into `out`; returns their paths. */
export async function writeReport(out: string, r: ReportInput): Promise<{ md: string; html: string; json: string; warnings: string[] }> {
  const figures = new Map((r.figures ?? []).map((f) => [f.file, f]));
  for (const f of figures.values()) if (f.svg !== undefined) await writePng(path.join(out, f.file), f.svg);
  const nonFinite = nonFinitePaths(r.json);
  const warnings = [...(r.warnings ?? [])];
  if (nonFinite.length) warnings.push(`${nonFinite.length} figure${nonFinite.length === 1 ? ' is' : 's are'} not finite (shown as —): ${nonFinite.slice(0, 8).join(', ')}${nonFinite.length > 8 ? ', …' : ''}.`);
  const run = r.run;
  // One line of run information, then the verdict, then the warnings: the first lines say what came out.
  const runLine = `*Run:* \`${run.command}\`${run.seed !== undefined ? ` · seed ${run.seed}` : ''} · voxvae ${run.version} · ${run.machine} · ${run.date}${run.seconds !== undefined ? ` · ${run.seconds.toFixed(0)} s` : ''}`;

  // Markdown
  const md: string[] = [`# ${r.title}`, '', runLine, ''];
  for (const s of r.summary ?? []) md.push(`**${s}**`, '');
  for (const w of warnings) md.push(`> **WARNING:** ${w}`, '');
  for (const line of r.body) {
    const m = /^\{\{figure:(.+)\}\}$/.exec(line);
    if (m) {
      const f = figures.get(m[1]!);
      if (f) md.push(`![${f.caption.replace(/[[\]]/g, '')}](${f.file})`, '', `*${f.caption}*`);
    } else md.push(line);
  }
  const mdFile = path.join(out, 'report.md');
  await writeFileAtomic(mdFile, new TextEncoder().encode(md.join('\n') + '\n'));

  // HTML, self-contained
  let html = `<h1>${esc(r.title)}</h1><dl class="run"><dt>command</dt><dd><code>${esc(run.command)}</code></dd>${run.seed !== undefined ? `<dt>seed</dt><dd>${run.seed}</dd>` : ''}<dt>version</dt><dd>voxvae ${esc(run.version)}</dd><dt>machine</dt><dd>${esc(run.machine)}</dd><dt>date</dt><dd>${esc(run.date)}${run.seconds !== undefined ? `; run time ${run.seconds.toFixed(0)} s` : ''}</dd></dl>`;
  if (r.summary?.length) html += `<div class="summary">${r.summary.map((s) => `<p>${inline(s)}</p>`).join('')}</div>`;
  for (const w of warnings) html += `<div class="warn" role="alert"><b>Warning:</b> ${inline(w)}</div>`;
  let table: string[] = [], list: string[] = [];
  const flush = (): void => {
    if (table.length) html += mdTable(table);
    if (list.length) html += `<ul>${list.map((l) => `<li>${inline(l)}</li>`).join('')}</ul>`;
    table = [];
    list = [];
  };
  for (const line of r.body) {
    if (line.startsWith('|')) {
      table.push(line);
      continue;
    }
    if (line.startsWith('- ')) {
      list.push(line.slice(2));
      continue;
    }
    flush();
    const fig = /^\{\{figure:(.+)\}\}$/.exec(line);
    if (fig) {
      const f = figures.get(fig[1]!);
      if (!f) continue;
      const png = await readFile(path.join(out, f.file));
      html += `<figure><img src="data:image/png;base64,${png.toString('base64')}" alt="${esc(f.caption)}"><figcaption>${inline(f.caption)}</figcaption></figure>`;
    } else if (line.startsWith('### ')) html += `<h3>${inline(line.slice(4))}</h3>`;
    else if (line.startsWith('## ')) html += `<h2>${inline(line.slice(3))}</h2>`;
    else if (line.startsWith('# ')) html += `<h2>${inline(line.slice(2))}</h2>`;
    else if (line.startsWith('> ')) html += `<div class="warn">${inline(line.slice(2).replace(/\*\*/g, ''))}</div>`;
    else if (line.trim()) html += `<p>${inline(line)}</p>`;
  }
  flush();
  const htmlFile = path.join(out, 'report.html');
  await writeFileAtomic(htmlFile, new TextEncoder().encode(`<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${esc(r.title)}</title><style>${CSS}</style><body>${html}</body></html>\n`));

  const jsonFile = path.join(out, 'results.json');
  const payload = { run, warnings, ...r.json };
  await writeFileAtomic(jsonFile, new TextEncoder().encode(JSON.stringify(payload, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n'));
  return { md: mdFile, html: htmlFile, json: jsonFile, warnings };
}
