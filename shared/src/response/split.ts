/**
 * Deterministic patient split: FNV-1a (32 bit) of "salt|patientId" → bucket in [0, 100); buckets
 * below trainPercent are training patients, the rest are held out. Depends only on the id and the
 * manifest's salt, so every regime (federated, local-only, centralised) and every process sees the
 * same split without exchanging anything. FNV-1a: Fowler, Noll, Vo (IETF draft-eastlake-fnv).
 */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export function splitOf(patientId: string, salt: string, trainPercent: number): 'train' | 'test' {
  return fnv1a32(`${salt}|${patientId}`) % 100 < trainPercent ? 'train' : 'test';
}
