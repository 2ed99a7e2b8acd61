/**
 * Wire protocol version. Sites and coordinator negotiate on connect: the major
 * versions must match; the minor version only adds optional fields.
 *
 * 2.0 (2026-11): participant-bound keys (the roster is part of the manifest), secure
 * aggregation inside the HE plaintexts, signed handshakes, recipients in every envelope,
 * receipts and audit checkpoints. 1.x sites cannot talk to a 2.x coordinator.
 * 2.1: `tls.rollover` (the coordinator's signed next TLS pin); a 2.0 site refuses it as malformed
 * and keeps working until the coordinator changes its TLS key.
 * 3.0: task-neutral fields — `metrics.report` carries `metrics: [{ name, value }]` instead of
 * `meanDice`/`metricName`/`metricValue`, `study.join` carries `trainSamples` instead of
 * `trainSlices` (both breaking, hence the major bump); new site message `round.decline`.
 * A 2.x peer is refused with TWF_E_PROTOCOL_VERSION at enrolment, handshake and per envelope.
 * 3.1: the manifest's optional `ciphertextsPerChunk` (update.chunk carries several ciphertexts as
 * packFrames; the coordinator sets 8 for updates of 64 ciphertexts or more). A 3.0 site does not
 * know the field: on such a study it fails closed (single-ciphertext chunks, refused with
 * TWF_E_UPDATE_SHAPE) and works as before on every other study.
 */
export const PROTOCOL_VERSION = '3.1';

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
