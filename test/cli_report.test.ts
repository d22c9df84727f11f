// The report as a researcher sees it: written by the one report writer (ts/report/report.ts) with the
// figures the commands draw, opened in headless Chromium (Debian's /usr/bin/chromium via playwright-core),
// screenshotted, and checked for layout errors: nothing wider than the window, every embedded figure
// decoded, the run's command/seed/version/machine and the warning boxes at the top; inside the figures,
// every label within the figure and no two legend or arrow labels overlapping.
// Skipped, with the reason printed, where /usr/bin/chromium is absent (CI: apt-get install chromium).
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { completionFigure } from '../ts/experiment/figures.js';
import { imageGrid, lineChart, scatterChart } from '../ts/report/plot.js';
import { nonFinitePaths, runInfo, writeReport, type ReportFigure } from '../ts/report/report.js';

const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available) console.warn(`cli_report.test.ts: browser checks skipped — ${CHROMIUM} is absent (install Debian's chromium)`);
const tmp = mkdtempSync(path.join(tmpdir(), 'voxvae-report-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

const shape: [number, number, number] = [32, 32, 16];
function ball(c: [number, number, number], r: number): Uint8Array {
  const m = new Uint8Array(shape[0] * shape[1] * shape[2]);
  for (let i = 0; i < shape[0]; i++) for (let j = 0; j < shape[1]; j++) for (let k = 0; k < shape[2]; k++) if ((i - c[0]) ** 2 + (j - c[1]) ** 2 + (k - c[2]) ** 2 <= r * r) m[(i * shape[1] + j) * shape[2] + k] = 1;
  return m;
}

function figures(): ReportFigure[] {
  const shell = ball([16, 16, 8], 9).map((v, i) => (v && !ball([16, 16, 8], 7)[i] ? 1 : 0));
  const truth = shell.map((v, i) => (v && ball([16, 25, 8], 4)[i] ? 1 : 0));
  const input = shell.map((v, i) => (v && !truth[i] ? 1 : 0));
  const predicted = truth.map((v, i) => (v || ball([16, 27, 8], 2)[i] ? 1 : 0)).map((v, i) => (i % 7 === 0 ? 0 : v));
  const epochs = [1, 2, 3];
  return [
    { file: 'curves.png', svg: lineChart('Validation reconstruction Dice', [{ name: 'aggregated: stage 1 (β = 0.1) — a long series name', x: epochs, y: [0.3, 0.5, 0.6] }, { name: 'vae-1e-4: β = 1e-4', x: epochs, y: [0.4, 0.55, 0.62] }], { xLabel: 'epoch', yLabel: 'Dice ↑' }), caption: 'Two curves over three epochs.' },
    { file: 'completion.png', svg: completionFigure('cranial defects, latent fitting', [{ label: 'skull 0', input, truth, predicted }], shape, [1, 1, 2]), caption: 'Latent fitting: three orthogonal slices through the defect.' },
    { file: 'pca.png', svg: scatterChart('PCA of z', [{ name: 'complete', points: [[0, 0], [1, 1]] }, { name: 'cranial', points: [[0.2, 0.1]] }, { name: 'facial', points: [[0.1, 0.2]] }], { arrows: [{ from: [0, 0], to: [0.5, 0.52], label: 'DEV facial' }, { from: [0, 0], to: [0.5, 0.5], label: 'DEV cranial' }] }), caption: 'Deviation vectors from the same origin.' },
    { file: 'grid.png', svg: imageGrid('probabilities', [[{ image: new Float32Array(64).map((_, i) => i / 63), h: 8, w: 8 }]], ['row'], ['col']), caption: 'A grey-scale grid with its colour bar.' },
  ];
}

test('nonFinitePaths names every NaN and Infinity', (t) => {
  t.deepEqual(nonFinitePaths({ a: 1, b: [2, NaN], c: { d: Infinity } }), ['b[1] = NaN', 'c.d = Infinity']);
});

test.serial('the report renders in Chromium without layout errors', async (t) => {
  if (!available) return t.pass(`skipped: ${CHROMIUM} is absent`);
  const figs = figures();
  const files = await writeReport(tmp, {
    title: 'voxvae test report',
    run: runInfo(undefined, 7, 12.5),
    summary: ['Reconstruction: Dice 0.62 on held-out volumes.'],
    warnings: ['model X collapsed: 0 active latent units.'],
    body: ['## Results', '', '| model | Dice ↑ | HD95 mm ↓ |', '|---|---:|---:|', '| KL(q(z∣x)) | 0.620 | — |', '', ...figs.flatMap((f) => [`{{figure:${f.file}}}`, ''])],
    figures: figs,
    json: { dice: 0.62, hd95: Infinity },
  });
  t.deepEqual(files.warnings, ['model X collapsed: 0 active latent units.', '1 figure is not finite (shown as —): hd95 = Infinity.']);
  const md = readFileSync(files.md, 'utf8');
  t.regex(md, /^# voxvae test report\n\n\*Run:\* `voxvae[^`]*` · seed 7 · voxvae \d+\.\d+\.\d+ · .+ × \d+.* · \d{4}-\d\d-\d\dT.* · 13 s\n\n\*\*Reconstruction: Dice 0\.62/);
  t.regex(md, /\*\*\n\n> \*\*WARNING:\*\* model X collapsed/);
  t.regex(md, /!\[Two curves over three epochs\.\]\(curves\.png\)/);
  t.is(JSON.parse(readFileSync(files.json, 'utf8')).hd95, null);

  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
    await page.goto(`file://${files.html}`);
    const layout = await page.evaluate(() => {
      const imgs = [...document.images];
      const first = document.body.firstElementChild!;
      const warn = document.querySelector('.warn');
      const h2 = document.querySelector('h2');
      return {
        overflow: document.documentElement.scrollWidth - window.innerWidth,
        images: imgs.length,
        decoded: imgs.filter((i) => i.complete && i.naturalWidth > 0).length,
        external: imgs.filter((i) => !i.src.startsWith('data:')).length,
        wider: imgs.filter((i) => i.getBoundingClientRect().width > document.body.clientWidth + 1).length,
        title: first.textContent,
        run: document.querySelector('.run')?.textContent ?? '',
        warnings: [...document.querySelectorAll('.warn')].map((w) => w.textContent),
        warnBeforeResults: !!warn && !!h2 && (warn.compareDocumentPosition(h2) & Node.DOCUMENT_POSITION_FOLLOWING) !== 0,
        arrows: [...document.querySelectorAll('th')].map((th) => th.textContent),
        ragged: [...document.querySelectorAll('table')].filter((tb) => new Set([...tb.rows].map((r) => r.cells.length)).size !== 1).length,
      };
    });
    t.deepEqual(errors, []);
    t.true(layout.overflow <= 0, `no horizontal overflow (${layout.overflow} px)`);
    t.is(layout.images, 4);
    t.is(layout.decoded, 4, 'every embedded figure decodes');
    t.is(layout.external, 0);
    t.is(layout.wider, 0);
    t.is(layout.ragged, 0, 'every table row has the header\'s cells');
    t.is(layout.title, 'voxvae test report');
    t.regex(layout.run, /command\s*voxvae/);
    t.regex(layout.run, /seed\s*7/);
    t.regex(layout.run, /version\s*voxvae \d+\.\d+\.\d+/);
    t.regex(layout.run, /machine\s*.+ × \d+/);
    t.is(layout.warnings.length, 2);
    t.true(layout.warnBeforeResults, 'warnings above the results');
    t.deepEqual(layout.arrows, ['model', 'Dice ↑', 'HD95 mm ↓']);
    const shot = path.join(tmp, 'report.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.true(statSync(shot).size > 20_000, 'a screenshot with content');

    // Inside each figure: every text within the figure, no two labels overlapping (legends, arrow labels).
    for (const f of figs) {
      await page.setContent(`<!doctype html><body style="margin:0">${f.svg}</body>`);
      const r = await page.evaluate(() => {
        const svg = document.querySelector('svg')!;
        const W = svg.width.baseVal.value, H = svg.height.baseVal.value;
        const boxes = [...svg.querySelectorAll('text')].map((e) => ({ text: e.textContent ?? '', b: (e as SVGGraphicsElement).getBBox(), rotated: e.hasAttribute('transform') }));
        const outside = boxes.filter(({ b, rotated }) => !rotated && (b.x < -0.5 || b.y < -0.5 || b.x + b.width > W + 0.5 || b.y + b.height > H + 0.5)).map((x) => x.text);
        const overlaps: string[] = [];
        for (let i = 0; i < boxes.length; i++)
          for (let j = i + 1; j < boxes.length; j++) {
            const a = boxes[i]!.b, c = boxes[j]!.b;
            if (boxes[i]!.rotated || boxes[j]!.rotated) continue;
            const ix = Math.min(a.x + a.width, c.x + c.width) - Math.max(a.x, c.x), iy = Math.min(a.y + a.height, c.y + c.height) - Math.max(a.y, c.y);
            if (ix > 1 && iy > 1) overlaps.push(`${boxes[i]!.text} / ${boxes[j]!.text}`);
          }
        return { outside, overlaps, ticks: boxes.map((x) => x.text) };
      });
      t.deepEqual(r.outside, [], `${f.file}: labels inside the figure`);
      t.deepEqual(r.overlaps, [], `${f.file}: no overlapping labels`);
      if (f.file === 'curves.png') {
        t.true(r.ticks.includes('epoch') && r.ticks.includes('Dice ↑'), 'axis labels');
        const xTicks = r.ticks.filter((s) => /^\d+(\.\d+)?$/.test(s) && ['1', '2', '3', '1.5', '2.5'].includes(s));
        t.deepEqual(xTicks.filter((s) => s.includes('.')), [], 'integer epoch ticks');
      }
      if (f.file === 'completion.png') t.true(r.ticks.includes('implant, correct') && r.ticks.includes('axial (through the defect)') && r.ticks.includes('sagittal'), 'three slices and a legend');
      if (f.file === 'grid.png') t.true(r.ticks.includes('value'), 'a colour bar');
    }
  } finally {
    await browser.close();
  }
});
