/**
 * Wire protocol version. Sites and coordinator negotiate on connect: the major
 * versions must match; the minor version only adds optional fields.
 */
export const PROTOCOL_VERSION = '1.0';

export function parseVersion(v: string): { major: number; minor: number } | null {
  const m = /^(\d+)\.(\d+)$/.exec(v);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : null;
}

/** True when a peer speaking `theirs` can talk to us (same major version). */
export function isCompatibleVersion(theirs: string, ours: string = PROTOCOL_VERSION): boolean {
  const a = parseVersion(theirs);
  const b = parseVersion(ours);
  return a !== null && b !== null && a.major === b.major;
}
