import { WireError, WIRE_ERRORS, defineErrors, errorClass, type WireErrorCode } from '@twinfed/protocols';

/**
 * Errors of the site node (configuration, enrolment, local data, approvals).
 * Protocol codes the site can raise or receive are in the wire catalogue,
 * re-exported here so this file lists everything a site can report.
 */
export const SITE_ERRORS = defineErrors({
  TWF_E_SITE_CONFIG: { message: 'Site configuration is missing or invalid; run twinfed site enrol first, or fix the field named.' },
  TWF_E_ENROL_FAILED: { message: 'Enrolment with the coordinator failed; check the URL and ask the lead for a fresh one-time token.' },
  TWF_E_ALREADY_ENROLLED: { message: 'This data folder already holds an enrolled site identity; use another --data-dir or keep the existing one.' },
  TWF_E_UNKNOWN_STUDY_LOCAL: { message: 'No study with this id has been announced to this site; start the site node so it receives the announcement.' },
  TWF_E_NO_DATA: { message: 'The site has no imported data matching the study; import it with twinfed site import.' },
  TWF_E_IMPORT: { message: 'A file could not be imported; the message names the file and the reason.' },
  TWF_E_NO_KEY: { message: 'The study key has not reached this site yet; it arrives sealed from the key dealer once the study starts.' },
  TWF_E_CONNECT: { message: 'The connection to the coordinator failed (network, TLS or refused); the site retries with backoff. The detail names the cause.' },
  TWF_E_DISCONNECTED: { message: 'The site is not connected to the coordinator right now; the message was not sent and is sent again after reconnecting.' },
  TWF_E_TIMEOUT: { message: 'The coordinator did not acknowledge a message in time; it is logged msg.unacked (the coordinator may or may not have it) and the step is repeated after reconnecting.' },
  TWF_E_APPROVAL_HASH: {
    message:
      'The hash given to approve is not the hash of the manifest announced for this study; nothing was approved. Review the manifest (twinfed site studies --show STUDY) and approve the hash it shows once you have checked it.',
  },
  TWF_E_TLS_PIN: {
    message:
      "The server at the coordinator's address presented a TLS key this site has not pinned, so nothing was sent. Either a TLS-inspecting proxy or firewall re-encrypts the traffic with its own certificate (ask IT to exempt the coordinator host from TLS inspection), or another server answers at that address (compare the pin below with the one the consortium lead gives you out of band; after a certificate renewal without rollover, the lead can send the new pin and you re-enrol or add it to tlsPins in site.json).",
  },
  TWF_E_TLS: {
    message:
      "The TLS connection to the coordinator failed (handshake, certificate authority, host name); the detail says why. A site that pins the coordinator's key does not use certificate authorities.",
  },
  TWF_E_PROXY: {
    message:
      'The HTTPS proxy (HTTPS_PROXY) could not be reached or refused to open a tunnel (CONNECT) to the coordinator; ask IT to allow the coordinator host and port, or list the host in NO_PROXY.',
  },
  TWF_E_MODEL_DIGEST: {
    message: 'The weights file of a model folder does not match the SHA-256 recorded in its model.json; the file is corrupted or was replaced. Copy the model folder again from its source.',
  },
  TWF_E_NO_TWIN: { message: 'The patient has no calibrated digital twin yet (it needs at least 2 measurements); import them with twinfed site import.' },
  TWF_E_WHATIF: {
    message:
      'An alternative treatment schedule cannot be simulated with this twin; the detail says why (e.g. systemic therapy folded into the growth rate of a twin calibrated without measurements before it started).',
  },
  TWF_E_TWIN_FIT: { message: 'The twin of a patient could not be recalibrated after an import; the measurements were imported, the previous twin (if any) stays. The detail gives the fitting error.' },
  TWF_E_CONSOLE_BIND: {
    message:
      'The site console may listen only on a loopback address (the default, 127.0.0.1) or a private hospital-network address (10/8, 172.16/12, 192.168/16, fc00::/7, link-local); all interfaces (0.0.0.0, ::) and public addresses are refused because the console shows patient data and approves studies. Set console.host in site.json (or --console-host) to such an address, and reach it from elsewhere through an SSH tunnel or a reverse proxy inside the hospital.',
  },
  TWF_E_CONSOLE_TOKEN: {
    message:
      'The site console token is unusable: TWINFED_SITE_CONSOLE_TOKEN must hold at least 16 characters, and DATA_DIR/console.token must be readable by the site user only (mode 0600). Fix it, or delete console.token to have a new one created.',
  },
});
export type SiteErrorCode = keyof typeof SITE_ERRORS;

/** `CODE: catalogue message (detail)`. */
export class SiteError extends errorClass('SiteError', SITE_ERRORS) {}

export { WireError, WIRE_ERRORS, type WireErrorCode };
