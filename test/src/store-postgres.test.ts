import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import pg from 'pg';
import type { Coordinator } from '@twinfed/coordinator';
import { storeConformance } from '@twinfed/coordinator/store/conformance';
import { PgStore, openPgConnection, pgAuditBackend, type PgConnection } from '@twinfed/coordinator/store/postgres';
import { verifyAuditChain } from '@twinfed/shared/audit/index';
import { initSodium } from '@twinfed/shared/crypto/index';
import type { SiteNode } from '@twinfed/site-node';
import { aggregateError, connectAndApprove, createAndStart, realSite, startCoordinator, tempDir, tinySpec, waitFor, type DeltaLog } from './harness.js';
import { findPgBin, startPgServer, type PgServer } from './pg-server.js';

/**
 * The coordinator's optional PostgreSQL store against a real server from the Debian binaries
 * (pg-server.ts; `apt-get install postgresql`, which .ci/run does): the store conformance cases
 * the SQLite store passes too (coordinator/src/store/conformance.ts), then one federated round end
 * to end with the coordinator's state in PostgreSQL, and a restart that finds it there.
 */
describe('coordinator store on PostgreSQL', () => {
  let server: PgServer;
  let conn: PgConnection | null = null;
  before(async () => {
    server = await startPgServer();
  });
  after(async () => {
    conn?.close();
    await server?.stop();
  });

  // One migrated database for the cases, emptied before each (the append-only trigger is
  // lifted for that moment only; the audit case checks it is back).
  storeConformance('PostgreSQL (a real server)', async () => {
    conn ??= openPgConnection(await server.createDatabase('conformance'));
    const tables = (conn.pg.query([{ sql: "select tablename from pg_tables where schemaname = 'public'", params: [] }]).rows as string[][]).map((r) => `"${r[0]}"`);
    conn.run('alter table audit_log disable trigger user');
    conn.run(`truncate ${tables.join(', ')}`);
    conn.run('alter table audit_log enable trigger user');
    const c = conn;
    return { store: new PgStore(c), audit: pgAuditBackend(c), exec: (sql) => void c.run(sql), close: () => undefined };
  });

  it('without the server binaries, the error names the Debian package to install (never a silent skip)', () => {
    const empty = tempDir('no-pg');
    try {
      assert.throws(() => findPgBin(empty.dir, ''), /apt-get install postgresql/);
    } finally {
      empty.cleanup();
    }
  });

  it('refuses to start on an unreachable server with TWF_E_DB naming the URL without its password', () => {
    assert.throws(
      () => openPgConnection(`postgres://twinfed:secret@127.0.0.1:${server.port}/no_such_db`, { connectTimeoutMs: 2000 }),
      (e: Error) => /TWF_E_DB/.test(e.message) && /no_such_db/.test(e.message) && !e.message.includes('secret') && /\*\*\*/.test(e.message),
    );
  });

  describe('one federated round with the coordinator state in PostgreSQL', () => {
    const tmp = tempDir('pg-fed');
    let url: string;
    let storeUrl: string;
    let c: Coordinator;
    let studyId: string;
    const nodes: SiteNode[] = [];
    const deltas: DeltaLog[] = [];
    const SITES = [
      { name: 'A', patients: ['STS_001', 'STS_002'], val: ['STS_002'] },
      { name: 'B', patients: ['STS_011', 'STS_012'], val: ['STS_012'] },
      { name: 'C', patients: ['STS_021', 'STS_022'], val: ['STS_022'] },
    ];

    before(async () => {
      await initSodium();
      storeUrl = await server.createDatabase('federation');
      ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator'), { storeUrl }));
      for (const [i, s] of SITES.entries()) {
        const r = await realSite(url, join(tmp.dir, `site-${i}`), `Hospital ${s.name}`, s.patients, s.val);
        nodes.push(r.node);
        deltas.push(r.deltas);
      }
      const started = await createAndStart(url, tinySpec({ rounds: 1, minSites: 3, roundDeadlineS: 120 }));
      studyId = started.studyId;
      await connectAndApprove(nodes, started);
    });

    after(async () => {
      for (const node of nodes) await node.close().catch(() => undefined);
      await c?.close();
      tmp.cleanup();
    });

    it('completes the round; every site decrypts the weighted average of the three updates', async () => {
      await waitFor(() => c.engine.studyStatus(studyId).state === 'completed' || null, 'study completion', 180_000, 250);
      await waitFor(() => nodes.every((x) => (x.latestModel(studyId)?.version ?? 0) === 1) || null, 'models at version 1', 30_000);
      const per = deltas.map((d) => d.get(1)!);
      const maxErr = aggregateError(nodes[0].modelAt(studyId, 0)!, nodes[0].modelAt(studyId, 1)!, per);
      assert.ok(maxErr < 3 * 2 ** -21 + 1e-6, `max |decrypted - plaintext average| = ${maxErr}`);
    });

    it('the state and the audit chain are in PostgreSQL, not in a SQLite file', async () => {
      assert.throws(() => c.db, /PostgreSQL/);
      const client = new pg.Client({ connectionString: storeUrl });
      await client.connect();
      try {
        const q = async (sql: string) => Number(((await client.query(sql)).rows[0] as { n: string }).n);
        assert.equal(await q(`select count(*) n from rounds where state = 'closed'`), 1);
        assert.equal(await q(`select count(*) n from sites`), 3);
        assert.equal(await q(`select count(*) n from audit_log`), c.engine.audit.entries().length);
        assert.ok((await q(`select count(*) n from accumulators`)) > 0, 'the published aggregate');
      } finally {
        await client.end();
      }
      assert.equal(verifyAuditChain(c.engine.audit.entries(), c.engine.identity.ed25519PublicKey).ok, true);
    });

    it('a restarted coordinator finds the completed study and continues the same audit chain', async () => {
      for (const node of nodes) await node.close();
      const before = c.engine.audit.entries().length;
      await c.close();
      ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator'), { storeUrl }));
      const st = c.engine.studyStatus(studyId);
      assert.equal(st.state, 'completed');
      assert.equal(st.roundSummaries.length, 1);
      const entries = c.engine.audit.entries();
      assert.ok(entries.length >= before);
      assert.equal(verifyAuditChain(entries, c.engine.identity.ed25519PublicKey).ok, true);
    });
  });
});
