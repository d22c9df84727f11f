// node:os for the browser bundle: ts/data/bytes.ts asks only for the machine's byte order.
export function endianness(): 'LE' | 'BE' {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 'LE' : 'BE';
}
export default { endianness };
