import { WireError, WIRE_ERRORS, type WireErrorCode } from '@twinfed/protocols';

/**
 * Errors of the site node (configuration, enrolment, local data, approvals).
 * Protocol codes the site can raise or receive are in the wire catalogue,
 * re-exported here so this file lists everything a site can report.
 */
export const SITE_ERRORS = {
  TWF_E_SITE_CONFIG: 'Site configuration is missing or invalid; run twinfed site enrol first, or fix the field named.',
  TWF_E_ENROL_FAILED: 'Enrolment with the coordinator failed; check the URL and ask the lead for a fresh one-time token.',
  TWF_E_ALREADY_ENROLLED: 'This data folder already holds an enrolled site identity; use another --data-dir or keep the existing one.',
  TWF_E_UNKNOWN_STUDY_LOCAL: 'No study with this id has been announced to this site; start the site node so it receives the announcement.',
  TWF_E_NO_DATA: 'The site has no imported data matching the study; import it with twinfed site import.',
  TWF_E_IMPORT: 'A file could not be imported; the message names the file and the reason.',
  TWF_E_NO_KEY: 'The study key has not reached this site yet; it arrives sealed from the key dealer once the study starts.',
  TWF_E_CONNECT: 'The connection to the coordinator failed (network, TLS or refused); the site retries with backoff. The detail names the cause.',
  TWF_E_DISCONNECTED: 'The site is not connected to the coordinator right now; the message was not sent and is sent again after reconnecting.',
  TWF_E_TIMEOUT: 'The coordinator did not acknowledge a message in time; it is logged msg.unacked (the coordinator may or may not have it) and the step is repeated after reconnecting.',
  TWF_E_APPROVAL_HASH: 'The hash given to approve is not the hash of the manifest announced for this study; nothing was approved. Review the manifest (twinfed site studies --show STUDY) and approve the hash it shows once you have checked it.',
  TWF_E_TLS_PIN: 'The server at the coordinator\'s address presented a TLS key this site has not pinned, so nothing was sent. Either a TLS-inspecting proxy or firewall re-encrypts the traffic with its own certificate (ask IT to exempt the coordinator host from TLS inspection), or another server answers at that address (compare the pin below with the one the consortium lead gives you out of band; after a certificate renewal without rollover, the lead can send the new pin and you re-enrol or add it to tlsPins in site.json).',
  TWF_E_TLS: 'The TLS connection to the coordinator failed (handshake, certificate authority, host name); the detail says why. A site that pins the coordinator\'s key does not use certificate authorities.',
  TWF_E_PROXY: 'The HTTPS proxy (HTTPS_PROXY) could not be reached or refused to open a tunnel (CONNECT) to the coordinator; ask IT to allow the coordinator host and port, or list the host in NO_PROXY.',
} as const;
export type SiteErrorCode = keyof typeof SITE_ERRORS;

export class SiteError extends Error {
  constructor(readonly code: SiteErrorCode, detail: string) {
    super(`${code}: ${SITE_ERRORS[code]} (${detail})`);
    this.name = 'SiteError';
  }
}

export { WireError, WIRE_ERRORS, type WireErrorCode };
