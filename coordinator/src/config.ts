import { z } from 'zod';
import { CoordinatorError } from './errors.js';

export const CoordinatorConfigSchema = z.object({
  /** Folder for the SQLite file and the coordinator identity (created if missing). */
  dataDir: z.string().min(1),
  host: z.string().default('127.0.0.1'),
  /** TCP port; 0 picks a free one (tests). */
  port: z.number().int().min(0).max(65535).default(7400),
  /** Bearer token leads use for the REST API. */
  adminToken: z.string().min(16),
  /** Accepted clock difference between a site's envelope timestamp and ours, ms. */
  clockSkewMs: z.number().int().min(1000).default(5 * 60 * 1000),
  /** A round opens only when no site joined in this many ms, so sites approved together start together. */
  joinSettleMs: z.number().int().min(0).default(2000),
  /** How often open rounds are checked against their deadline, ms. */
  tickMs: z.number().int().min(50).default(1000),
  /** Largest socket.io message, bytes (ciphertext chunks and aggregates). */
  maxMessageBytes: z.number().int().min(1 << 16).default(64 << 20),
  logLevel: z.enum(['silent', 'error', 'warn', 'info', 'debug']).default('info'),
});
export type CoordinatorConfig = z.infer<typeof CoordinatorConfigSchema>;
export type CoordinatorConfigInput = z.input<typeof CoordinatorConfigSchema>;

export function parseCoordinatorConfig(input: unknown): CoordinatorConfig {
  const p = CoordinatorConfigSchema.safeParse(input);
  if (!p.success) throw new CoordinatorError('TWF_E_CONFIG', p.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  return p.data;
}
