// node:path for the browser bundle: the POSIX functions ts/data/nrrd.ts calls while parsing a header held
// in memory (it resolves the names of detached data files, which the browser app then refuses).
function normalize(parts: string[]): string[] {
  const out: string[] = [];
  for (const p of parts) {
    if (p === '' || p === '.') continue;
    if (p === '..') out.pop();
    else out.push(p);
  }
  return out;
}
export function isAbsolute(p: string): boolean {
  return p.startsWith('/');
}
export function resolve(...paths: string[]): string {
  let acc: string[] = [];
  for (const p of paths) acc = isAbsolute(p) ? p.split('/') : [...acc, ...p.split('/')];
  return '/' + normalize(acc).join('/');
}
export function dirname(p: string): string {
  const parts = resolve(p).split('/');
  parts.pop();
  return parts.join('/') || '/';
}
export function basename(p: string): string {
  return p.split('/').pop() ?? '';
}
export function join(...paths: string[]): string {
  return normalize(paths.join('/').split('/')).join('/');
}
export function relative(from: string, to: string): string {
  const a = resolve(from).split('/').filter(Boolean), b = resolve(to).split('/').filter(Boolean);
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return [...a.slice(i).map(() => '..'), ...b.slice(i)].join('/');
}
export const sep = '/';
export default { isAbsolute, resolve, dirname, basename, join, relative, sep };
