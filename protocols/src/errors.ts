/**
 * Error codes that cross the wire. A peer that refuses a message replies with
 * one of these in a `reject` message, and both ends write it to their audit
 * logs, so users, logs and docs match on the same stable code.
 * Package-local errors (database, files, CLI) live in each package's errors.ts,
 * every catalogue in the one shape of define-errors.ts.
 */
import { TwinfedError, defineErrors, inCatalogue, standardFormat } from './define-errors.js';

export const WIRE_ERRORS = defineErrors({
  TWF_E_PROTOCOL_VERSION: { status: 426, message: 'Protocol version not supported by this coordinator; upgrade the site node to a release that speaks the same major version.' },
  TWF_E_MALFORMED: { status: 400, message: 'Message does not match its schema; the sender is out of date or buggy. The rejection names the failing field.' },
  TWF_E_HELLO_FIRST: { status: 401, message: "The first message on a connection must be a signed hello that proves the site's identity." },
  TWF_E_UNKNOWN_SITE: { status: 401, message: 'Sender is not an enrolled site; enrol it with a one-time token first (twinfed site enrol).' },
  TWF_E_BAD_SIGNATURE: { status: 401, message: "Envelope signature does not verify with the sender's registered Ed25519 key; the message was altered or signed with another key." },
  TWF_E_DIGEST_MISMATCH: { status: 400, message: 'Payload SHA-256 does not match the digest in the signed envelope; the payload was altered or truncated in transit.' },
  TWF_E_REPLAY: { status: 409, message: 'Sequence number already used by this sender; the message is a replay or a duplicate.' },
  TWF_E_STALE_MESSAGE: { status: 408, message: "Envelope timestamp is outside the accepted clock window; check the site's clock (NTP)." },
  TWF_E_WRONG_ROUND: { status: 409, message: 'Message is for a round that is not open; it is stale or early and was not mixed into any aggregate.' },
  TWF_E_ROUND_CLOSED: { status: 409, message: 'The round has closed; late updates are refused, not mixed into the next round.' },
  TWF_E_UNKNOWN_STUDY: { status: 404, message: 'No such study at this coordinator.' },
  TWF_E_NOT_PARTICIPANT: { status: 403, message: 'The site has not joined this study (its privacy officer has not approved the current manifest).' },
  TWF_E_STUDY_NOT_APPROVED: { status: 403, message: "The site's privacy officer has not approved this study manifest; approve it with twinfed site approve STUDY." },
  TWF_E_MANIFEST_MISMATCH: { status: 409, message: 'The manifest hash does not match the study; the manifest changed and needs a new approval.' },
  TWF_E_BAD_CIPHERTEXT: { status: 422, message: "A ciphertext chunk is not a valid ciphertext for the study's encryption parameters." },
  TWF_E_DUPLICATE_CHUNK: { status: 409, message: 'This chunk of the update was already received.' },
  TWF_E_UPDATE_SHAPE: { status: 422, message: 'Update metadata (chunk count, length, sample count, parameter digest) disagrees with the study or with earlier chunks.' },
  TWF_E_ENROLMENT_TOKEN: { status: 401, message: 'Enrolment token unknown, expired or already used; ask the consortium lead for a new one.' },
  TWF_E_NOT_AUTHORISED: { status: 401, message: 'Missing or wrong lead API token (Authorization: Bearer ...).' },
  TWF_E_BAD_REQUEST: { status: 400, message: 'Request body or parameters are invalid.' },
  TWF_E_STUDY_STATE: { status: 409, message: 'The study is not in a state that allows this action.' },
  TWF_E_NOT_FOUND: { status: 404, message: 'Not found.' },
  TWF_E_TOO_FEW_CONTRIBUTORS: {
    status: 422,
    message:
      'Fewer than 3 contributors (or fewer than minSites, or than the secure-aggregation threshold): an aggregate of so few sites would expose an individual update. Raise minSites to at least 3, or the roster.',
  },
  TWF_E_SAMPLES_BOUND: {
    status: 422,
    message: "Declared sample count is above the manifest's maxSamplesPerSite or above the counts the site joined with; it would give the site an outsized weight in the average.",
  },
  TWF_E_HANDSHAKE: { status: 401, message: "Connection refused: the handshake needs a fresh nonce from POST /api/handshake signed with the site's enrolled Ed25519 key." },
  TWF_E_SITE_REVOKED: { status: 403, message: "This site's enrolment was revoked by the consortium lead; it can no longer connect. Ask the lead for a new enrolment." },
  TWF_E_EVICTED: { status: 403, message: 'The lead evicted this site from the study (or its officer withdrew); it takes part in no further round.' },
  TWF_E_RATE_LIMITED: { status: 429, message: 'Too many requests or refused messages from this address or site; slow down and retry later.' },
  TWF_E_KEY_HANDOUT: {
    status: 422,
    message: 'A study-key handout is not signed by a key dealer of the approved roster, names a recipient outside the roster, or does not match its key commitment; the key was not accepted.',
  },
  TWF_E_SECAGG: {
    status: 409,
    message: 'Secure-aggregation message out of order or inconsistent (unsigned mask key, survivor sets that differ, a share for a site that is not in the round); nothing was revealed.',
  },
  TWF_E_AGGREGATE_BOUNDS: {
    status: 422,
    message: 'The decrypted average has an element outside the clip bound [-B, B]: some contribution was not a valid clipped update. The aggregate was not applied.',
  },
  TWF_E_WRONG_RECIPIENT: { status: 400, message: 'The envelope is addressed to another party; it was not accepted.' },
  TWF_E_STRATEGY_NOT_LINEAR: {
    status: 422,
    message:
      'The aggregation strategy needs individual updates (trimmed mean, median, Krum, ...), which additive encryption never reveals; choose a linear strategy (fedavg, fedprox, fedavgm, fedadam, fedyogi, fedadagrad; docs/strategies.md).',
  },
  TWF_E_DP_PARAMS: {
    status: 422,
    message: 'The differential-privacy parameters cannot be met (no noise multiplier reaches the budget, or the sampling rate leaves no patient per step); the message names the field.',
  },
  TWF_E_TOO_LARGE: { status: 413, message: 'Request body too large.' },
  TWF_E_ROUND_FAILED: { status: 409, message: 'The round failed (quorum not reached in time, too many sites dropped, or the lead aborted it); nothing was aggregated. The study opens a fresh round.' },
  TWF_E_DP_BUDGET: { status: 409, message: "The site's differential-privacy budget would be exceeded by this round; the site declines it and is asked to no later round of the study." },
  TWF_E_HE_PARAMS: {
    status: 422,
    message: 'The encryption parameters are not supported by the HE layer (scheme, ring degree, modulus sizes, precision); choose parameters it accepts, e.g. the defaults.',
  },
  TWF_E_AGGREGATE_PRUNED: {
    status: 410,
    message:
      "A round's aggregate the site asked for is older than the coordinator's catch-up window (catchUpRounds; its digest is kept, its ciphertexts are gone): the site cannot rebuild the current model and sits out the study's rounds. Restore the site's data folder from a backup within the window, or withdraw it; the coordinator cannot hand out a model it cannot read.",
  },
  TWF_E_INTERNAL: { status: 500, message: 'Internal error; see the coordinator log.' },
});

export type WireErrorCode = keyof typeof WIRE_ERRORS;

/** An error with a catalogued code; `detail` says what exactly was wrong, `status` is the HTTP status of the code. */
export class WireError extends TwinfedError<WireErrorCode> {
  readonly status: number;
  constructor(code: WireErrorCode, detail = '') {
    super(code, standardFormat(code, WIRE_ERRORS[code], detail), detail);
    this.name = 'WireError';
    this.status = WIRE_ERRORS[code].status;
  }
}

export function isWireErrorCode(code: string): code is WireErrorCode {
  return inCatalogue(WIRE_ERRORS, code);
}
