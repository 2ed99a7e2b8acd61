import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one coordinator (its own registry, so tests can build several). */
export function createCoordinatorMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'twinfed_coordinator_' });
  return {
    registry,
    roundsOpened: new Counter({ name: 'twinfed_rounds_opened_total', help: 'Training rounds opened', registers: [registry] }),
    roundsFailed: new Counter({ name: 'twinfed_rounds_failed_total', help: 'Training rounds failed (quorum lost, too many dropouts, aborted by the lead)', registers: [registry] }),
    connectionsRefused: new Counter({
      name: 'twinfed_connections_refused_total',
      help: 'Socket handshakes refused before authentication, by error code (not written to the audit log)',
      labelNames: ['code'],
      registers: [registry],
    }),
    enrolmentsRefused: new Counter({
      name: 'twinfed_enrolments_refused_total',
      help: 'Enrolment attempts refused (unknown, used or expired token, bad keys, other protocol), by code',
      labelNames: ['code'],
      registers: [registry],
    }),
    preAuthRefused: new Counter({
      name: 'twinfed_preauth_requests_refused_total',
      help: 'Unauthenticated REST requests (enrolment, handshake nonces) refused, by route and code',
      labelNames: ['route', 'code'],
      registers: [registry],
    }),
    requestsRateLimited: new Counter({
      name: 'twinfed_requests_rate_limited_total',
      help: 'Unauthenticated requests refused by the per-address rate limit',
      labelNames: ['route'],
      registers: [registry],
    }),
    roundsClosed: new Counter({ name: 'twinfed_rounds_closed_total', help: 'Training rounds closed with a published aggregate', registers: [registry] }),
    updatesAccepted: new Counter({ name: 'twinfed_updates_accepted_total', help: 'Complete encrypted updates accepted into an aggregate', registers: [registry] }),
    updatesAbandoned: new Counter({ name: 'twinfed_updates_abandoned_total', help: 'Partial updates removed from an aggregate at round close', registers: [registry] }),
    messagesAccepted: new Counter({ name: 'twinfed_messages_accepted_total', help: 'Site messages accepted, by type', labelNames: ['type'], registers: [registry] }),
    messagesRejected: new Counter({ name: 'twinfed_messages_rejected_total', help: 'Site messages rejected, by error code', labelNames: ['code'], registers: [registry] }),
    bytesIn: new Counter({ name: 'twinfed_bytes_in_total', help: 'Envelope body bytes received from sites', registers: [registry] }),
    bytesOut: new Counter({ name: 'twinfed_bytes_out_total', help: 'Envelope body bytes sent to sites', registers: [registry] }),
    aggregationSeconds: new Histogram({
      name: 'twinfed_aggregation_seconds',
      help: 'Time to add one ciphertext chunk into the running aggregate',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
      registers: [registry],
    }),
    groupCommits: new Counter({ name: 'twinfed_group_commits_total', help: 'Commits of the group commit (per-message writes of several sites in one transaction)', registers: [registry] }),
    groupCommitRequests: new Counter({ name: 'twinfed_group_commit_requests_total', help: 'Per-message writes carried by those commits', registers: [registry] }),
    connectedSites: new Gauge({ name: 'twinfed_connected_sites', help: 'Site nodes connected now', registers: [registry] }),
    currentRound: new Gauge({ name: 'twinfed_current_round', help: 'Current round of each running study', labelNames: ['study'], registers: [registry] }),
  };
}
export type CoordinatorMetrics = ReturnType<typeof createCoordinatorMetrics>;
