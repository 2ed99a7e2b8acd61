import Database, { type SqliteDatabase } from '@twinfed/shared/db/driver';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { io } from 'socket.io-client';
import { PROTOCOL_VERSION, WIRE_ERRORS, manifestHash as hashOf, sha256Hex, type Ack, type Envelope, type StudyManifest } from '@twinfed/protocols';
import { SITE_FILES, SiteNode, enrolSite, openSiteStore } from '@twinfed/site-node';
import { dropTail, rewriteAndResign } from '@twinfed/shared/audit/testing';
import { loadIdentity, sealEnvelope } from '@twinfed/shared/crypto/index';
import { gzipOneMember, niftiGz, niftiHeader, nrrdGz } from '@twinfed/shared/imaging/bombs';
import { RawSite, STS_DIR, createAndStart, enrolNewSite, lead, startCoordinator, tinySpec, waitFor } from '../harness.js';
import { RawParticipant } from '../raw-protocol.js';
import {
  connectedAt,
  coordinatorProcess,
  dbBytes,
  emitToSite,
  enrolledSite,
  freePort,
  metricSum,
  metrics,
  openSite,
  operatorSigner,
  pool,
  serverSocket,
  sleep,
  tableCounts,
  tree,
  twinfed,
  type OpenSite,
} from './ops-kit.js';
import { failed, refused, type Attack, type AttackContext } from './types.js';

const MiB = 2 ** 20;
const DATA = [
  { name: 'A', patients: ['STS_001', 'STS_002', 'STS_003'], val: ['STS_003'] },
  { name: 'B', patients: ['STS_011', 'STS_012', 'STS_013'], val: ['STS_013'] },
  { name: 'C', patients: ['STS_021', 'STS_022', 'STS_023'], val: ['STS_023'] },
];
const auditOf = (s: OpenSite) => s.node.audit.entries();
const studyStatus = (s: OpenSite, studyId: string) => SiteNode.listStudies(s.node.db).find((x) => x.studyId === studyId)?.status ?? null;
const rejections = (s: OpenSite, code: string) => auditOf(s).filter((e) => (e.action === 'msg.rejected' || e.action === 'msg.failed') && e.detail?.startsWith(`${code}:`));

/**
 * A coordinator and a roster of three enrolled sites under ctx.dir/hospitals; the first `open`
 * have running site nodes connected (with real PET patients when `withData`, so they can join);
 * a started 1-round study every open node has been shown.
 */
async function rosterOfThree(ctx: AttackContext, open: number, withData = false) {
  const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'));
  const sites: OpenSite[] = [];
  const dirs = ['a', 'b', 'c'].map((d) => join(ctx.dir, 'hospitals', d));
  const close = async () => {
    for (const s of sites) await s.close();
    await c.close();
  };
  try {
    for (let i = 0; i < 3; i++) {
      if (i < open) sites.push(await enrolledSite(url, dirs[i], `Hospital ${'ABC'[i]}`, withData ? DATA[i] : undefined));
      else await enrolNewSite(url, dirs[i], `Hospital ${'ABC'[i]}`);
    }
    for (const s of sites) s.node.connect();
    await connectedAt(
      c,
      sites.map((s) => s.node.siteId),
    );
    const study = await createAndStart(url, tinySpec({ rounds: 1, minSites: 3 }));
    await waitFor(() => sites.every((s) => studyStatus(s, study.studyId) !== null), 'the study announced at the open sites', 20_000, 50);
    return { c, url, sites, dirs, ...study, close };
  } catch (e) {
    await close();
    throw e;
  }
}

const firstLine = (s: string) => s.split('\n').find((l) => l.trim()) ?? '';

// ------------------------------------------------------------------------------------ finding 8

const auditTampering: Attack = {
  name: 'audit-log-tampering',
  finding: 8,
  expected:
    'after a real 3-site round, a copy of coordinator.db with its tail dropped, a message deleted or a digest altered (re-signed with its own key) fails `audit compare` (exit 2, naming receipt/checkpoint/entry); a lost message passes only if the site logged msg.unacked',
  async run(ctx) {
    const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'));
    const sites: OpenSite[] = [];
    let running = true;
    const shutDown = async () => {
      if (!running) return;
      running = false;
      for (const s of sites) await s.close();
      await c.close();
    };
    try {
      for (const d of DATA) sites.push(await enrolledSite(url, join(ctx.dir, d.name), `Hospital ${d.name}`, d));
      const { studyId, manifestHash } = await createAndStart(url, tinySpec({ rounds: 1, minSites: 3, roundDeadlineS: 120 }));
      for (const s of sites) s.node.connect();
      await waitFor(() => sites.every((s) => studyStatus(s, studyId) !== null), 'announcements', 20_000, 50);
      for (const s of sites) SiteNode.approve(s.node.db, s.node.audit, studyId, `officer ${s.node.config.siteName}`, manifestHash);
      await waitFor(
        () =>
          c.engine.studyStatus(studyId).state === 'completed' &&
          c.engine.roundStatus(studyId, 1).metrics.length === 3 &&
          sites.every((s) => studyStatus(s, studyId) === 'completed' && tableCounts(join(s.dir, SITE_FILES.db)).audit_checkpoints > 0),
        'the round, its metrics and checkpoints',
        90_000,
        100,
      );
      ctx.log('round completed; losing one hello of A in transit');

      // A message lost in transit: the coordinator never logs A's next hello (it hangs, as if the
      // process died between receiving and logging) and the connection drops under it.
      const a = sites[0];
      const honest = c.engine.handle.bind(c.engine);
      const swallowed: { seq: number | null } = { seq: null };
      c.engine.handle = (siteId, raw) => {
        const h = (raw as Partial<Envelope>)?.header;
        if (swallowed.seq === null && siteId === a.node.siteId && h?.type === 'hello') {
          swallowed.seq = h.seq;
          return new Promise(() => undefined);
        }
        return honest(siteId, raw);
      };
      serverSocket(c, a.node.siteId)?.disconnect(true);
      const lost = await waitFor(() => swallowed.seq, 'A to reconnect and send hello', 20_000, 20);
      serverSocket(c, a.node.siteId)?.disconnect(true);
      await waitFor(() => auditOf(a).some((e) => e.action === 'msg.unacked' && e.seq === lost), 'A to log the hello unacknowledged', 10_000, 20);
      c.engine.handle = honest;
      await connectedAt(c, [a.node.siteId]);
      await shutDown();

      // Copies, as an attacker with file access (and the coordinator's own key) makes them.
      const work = join(ctx.dir, 'tamper');
      mkdirSync(work);
      const coordinatorDb = join(ctx.dir, 'coordinator', 'coordinator.db');
      const key = loadIdentity(join(ctx.dir, 'coordinator', 'coordinator-identity.json')).ed25519SecretKey;
      const copy = (name: string, edit?: (db: SqliteDatabase) => void) => {
        const p = join(work, name);
        copyFileSync(coordinatorDb, p);
        if (edit) {
          const db = new Database(p);
          edit(db);
          db.close();
        }
        return p;
      };
      const siteId = a.node.siteId;
      const entries = new Database(coordinatorDb, { readonly: true });
      const received = (type: string) =>
        entries.prepare("select id, seq from audit_log where actor = ? and action = 'msg.received' and msg_type = ? order by id limit 1").get(siteId, type) as { id: number; seq: number };
      const total = (entries.prepare('select count(*) n from audit_log').get() as { n: number }).n;
      const setup = received('mask.setup');
      const chunk = received('update.chunk');
      entries.close();
      const siteDb = new Database(join(a.dir, SITE_FILES.db), { readonly: true });
      const newestCheckpoint = (siteDb.prepare('select max(entry_id) e from audit_checkpoints').get() as { e: number }).e;
      siteDb.close();
      const drop = total - newestCheckpoint + 1;
      const variants = {
        base: copy('base.db'),
        tail: copy('tail.db', (db) => dropTail(db, drop)),
        deleted: copy('deleted.db', (db) => rewriteAndResign(db, key, (es) => es.filter((e) => e.id !== setup.id))),
        digest: copy('digest.db', (db) => rewriteAndResign(db, key, (es) => es.map((e) => (e.id === chunk.id ? { ...e, digest: 'f'.repeat(64) } : e)))),
      };
      // The site's own operator hides the msg.unacked of the lost hello (re-signing the site's log with the site's key).
      const siteCopy = join(work, 'site-without-unacked');
      mkdirSync(siteCopy);
      for (const f of [SITE_FILES.db, SITE_FILES.config, SITE_FILES.identity]) copyFileSync(join(a.dir, f), join(siteCopy, f));
      const siteKey = loadIdentity(join(a.dir, SITE_FILES.identity)).ed25519SecretKey;
      const sdb = new Database(join(siteCopy, SITE_FILES.db));
      rewriteAndResign(sdb, siteKey, (es) => es.filter((e) => !(e.action === 'msg.unacked' && e.seq === lost)));
      sdb.close();

      const compare = (site: string, coordinator: string) => twinfed(ctx.dir, ['audit', 'compare', '--site-db', join(site, SITE_FILES.db), '--coordinator-db', coordinator]);
      const [base, tail, deleted, digest, hidden] = await Promise.all([
        compare(a.dir, variants.base),
        compare(a.dir, variants.tail),
        compare(a.dir, variants.deleted),
        compare(a.dir, variants.digest),
        compare(siteCopy, variants.base),
      ]);
      const checks: [string, boolean, string][] = [
        [
          'honest copy',
          base.code === 0 && new RegExp(`\\d+ unacknowledged site messages the coordinator never logged \\(lost in transit\\): seq [0-9, .]*\\b${lost}\\b`).test(base.out),
          base.out + base.err,
        ],
        [
          'dropped tail',
          tail.code === 2 &&
            new RegExp(`checkpoint: checkpoint of coordinator entry ${newestCheckpoint} .*no entry ${newestCheckpoint} \\(it has ${newestCheckpoint - 1}\\): its tail was dropped`).test(tail.out),
          tail.out + tail.err,
        ],
        [
          'deleted message',
          deleted.code === 2 &&
            /coordinator log +\d+ entries: chain intact/.test(deleted.out) &&
            new RegExp(`receipt: receipt for site seq ${setup.seq} \\(coordinator entry \\d+\\)`).test(deleted.out) &&
            new RegExp(`sent-not-received: site seq ${setup.seq} \\(mask.setup\\)`).test(deleted.out),
          deleted.out + deleted.err,
        ],
        [
          'altered digest',
          digest.code === 2 &&
            /coordinator log +\d+ entries: chain intact/.test(digest.out) &&
            new RegExp(`digest-mismatch: site seq ${chunk.seq} \\(update.chunk\\)`).test(digest.out) &&
            new RegExp(`receipt: receipt for site seq ${chunk.seq} \\(coordinator entry ${chunk.id}\\): coordinator entry ${chunk.id} has another hash`).test(digest.out),
          digest.out + digest.err,
        ],
        ['msg.unacked hidden', hidden.code === 2 && new RegExp(`sent-not-received: site seq ${lost} \\(hello\\)`).test(hidden.out), hidden.out + hidden.err],
      ];
      const bad = checks.find(([, ok]) => !ok);
      if (bad) return failed(`${bad[0]}: audit compare said ${JSON.stringify(bad[2].slice(0, 900))}`);
      return refused(
        `honest copy exit 0 (A's lost hello seq ${lost} explained by its msg.unacked); last ${drop} of ${total} entries dropped -> exit 2, checkpoint of entry ${newestCheckpoint} missing; mask.setup seq ${setup.seq} deleted + chain re-signed (verifies alone) -> exit 2, its receipt and sent-not-received; update.chunk seq ${chunk.seq} digest altered + re-signed -> exit 2, digest-mismatch and its receipt; the site's msg.unacked removed -> exit 2, sent-not-received seq ${lost}`,
        null,
      );
    } finally {
      await shutDown();
    }
  },
};

// ------------------------------------------------------------------------------------ finding 9

const connectionFlood: Attack = {
  name: 'unauthenticated-connection-flood',
  finding: 9,
  expected:
    '300 unauthenticated nonce requests, socket handshakes and junk connections plus pre-hello junk from one address add no audit row per attempt, are counted in /metrics, and get 429 TWF_E_RATE_LIMITED; an open site connection keeps working',
  async run(ctx) {
    const limit = { burst: 120, perS: 4 };
    const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'), { preAuthRateLimit: limit });
    const port = Number(new URL(url).port);
    let site: OpenSite | null = null;
    let raw: RawSite | null = null;
    try {
      site = await enrolledSite(url, join(ctx.dir, 'a'), 'Hospital A');
      await enrolNewSite(url, join(ctx.dir, 'b'), 'Hospital B');
      await enrolNewSite(url, join(ctx.dir, 'c'), 'Hospital C');
      site.node.connect();
      raw = await RawSite.create(url, join(ctx.dir, 'b'));
      await raw.connected();
      await connectedAt(c, [site.node.siteId]);
      const dbPath = join(c.config.dataDir, 'coordinator.db');
      const rows0 = c.engine.audit.entries().length;
      const bytes0 = dbBytes(dbPath);
      const m0 = await metrics(url);

      // 100 raw TCP connections carrying junk instead of HTTP.
      const junk = await pool(
        Array.from({ length: 100 }, (_, i) => i),
        10,
        (i) =>
          new Promise<string>((res) => {
            const t = tcpConnect(port, '127.0.0.1', () =>
              t.end(i % 2 ? '\x16\x03\x01\x02\x00junk' : 'GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x00\xff garbage'),
            );
            let got = '';
            t.on('data', (b: Buffer) => (got += b.toString('latin1')));
            t.setTimeout(3000, () => t.destroy());
            t.on('close', () => res(got.split('\r\n')[0] || 'closed'));
            t.on('error', () => undefined);
          }),
      );
      // At the same time, 100 socket handshakes with junk auth (none, a bare site id, a made-up nonce, a
      // path and an old version) and 100 nonce requests (bad JSON, a path as site id, no site id, unknown ids).
      const auths = [
        {},
        { siteId: site.node.siteId, protocolVersion: PROTOCOL_VERSION },
        { siteId: site.node.siteId, protocolVersion: PROTOCOL_VERSION, nonce: 'made-up-nonce-0123456789abcdef', signature: 'AAAA' },
        { siteId: '../../etc', protocolVersion: '1.0' },
      ];
      const socket = (i: number) =>
        new Promise<string>((res) => {
          const s = io(url, { auth: auths[i % 4], transports: ['websocket'], reconnection: false, forceNew: true, timeout: 5000 });
          s.once('connect', () => {
            s.disconnect();
            res('connected');
          });
          s.once('connect_error', (e: Error & { data?: { code?: string } }) => {
            s.disconnect();
            res(e.data?.code ?? e.message);
          });
        });
      const bodies = ['{"siteId":', JSON.stringify({ siteId: '../../etc' }), '{}', ''];
      const nonce = async (i: number) => {
        const body = i % 4 === 3 ? JSON.stringify({ siteId: `site-nobody-${i}` }) : bodies[i % 4];
        const r = await fetch(new URL('/api/handshake', url), { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        const j = (await r.json().catch(() => ({}))) as { code?: string };
        return `${r.status}${j.code ? ` ${j.code}` : ''}`;
      };
      const mixed = await pool(
        Array.from({ length: 200 }, (_, i) => i),
        10,
        (i) => (i % 2 ? nonce(i >> 1) : socket(i >> 1)),
      );
      const sockets = mixed.filter((_, i) => i % 2 === 0);
      const http = mixed.filter((_, i) => i % 2 === 1);
      // A NEW connection from the same address now waits for the bucket to refill, even a real site's.
      const fresh = await fetch(new URL('/api/handshake', url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ siteId: site.node.siteId }) });
      // Pre-hello junk on an authenticated connection (site B never says hello): counted, then cut off.
      let junkAcked = 0;
      const cut = new Promise<'cut'>((r) => raw!.socket.once('disconnect', () => r('cut')));
      const junkEnvelopes: unknown[] = [{ header: { type: 'hello' }, body: 'x' }, 'junk', {}, { header: {}, signature: '!!', body: 1 }];
      for (let i = 0; i < 100 && raw.socket.connected; i++) {
        const r = await Promise.race([raw.emit(junkEnvelopes[i % 4]), cut]);
        if (r === 'cut') break;
        if (!r.ok && r.code === 'TWF_E_MALFORMED') junkAcked++;
      }
      await waitFor(() => c.engine.audit.entries().some((e) => e.action === 'site.disconnected' && e.actor === raw!.siteId), 'B cut off', 10_000, 20);

      const rows1 = c.engine.audit.entries().length;
      const bytes1 = dbBytes(dbPath);
      const m1 = await metrics(url);
      const actions = c.engine.audit.entries(rows0).map((e) => e.action);
      const added = [...new Set(actions)].map((x) => `${actions.filter((y) => y === x).length}x ${x}`);
      const refusedCounted = metricSum(m1, 'twinfed_connections_refused_total') - metricSum(m0, 'twinfed_connections_refused_total');
      const limitedCounted = metricSum(m1, 'twinfed_requests_rate_limited_total') - metricSum(m0, 'twinfed_requests_rate_limited_total');
      const limitedSeen = http.filter((x) => x === '429 TWF_E_RATE_LIMITED').length + sockets.filter((x) => x === 'TWF_E_RATE_LIMITED').length;
      const socketRefusals = sockets.filter((x) => x !== 'TWF_E_RATE_LIMITED').length;

      // The site connected before the flood keeps working: it is shown the next study and its answer is accepted.
      const { studyId } = await createAndStart(url, tinySpec({ rounds: 1, minSites: 3 }));
      await waitFor(
        () => c.engine.audit.entries().some((e) => e.actor === site!.node.siteId && e.action === 'msg.received' && e.msgType === 'study.decline' && e.studyId === studyId),
        'the open site to answer the new study',
        10_000,
        20,
      );
      const stillConnected = site.node.connected && c.engine.listSites().find((s) => s.siteId === site!.node.siteId)!.connected;

      const summary = `audit +${rows1 - rows0} rows (${added.join(', ') || 'none'}) and DB ${((bytes1 - bytes0) / 1024).toFixed(0)} KiB (${(bytes0 / 1024).toFixed(0)} -> ${(bytes1 / 1024).toFixed(0)} KiB) for 300 attempts + ${junkAcked} pre-hello junk messages`;
      if (rows1 - rows0 > 5) return failed(`the audit log grew per attempt: ${summary}`);
      if (limitedSeen === 0 || limitedCounted < limitedSeen) return failed(`no per-address limit seen (${limitedSeen} answers 429/TWF_E_RATE_LIMITED, ${limitedCounted} counted); ${summary}`);
      if (refusedCounted < socketRefusals) return failed(`${socketRefusals} refused socket handshakes but /metrics counts ${refusedCounted}`);
      if (!stillConnected) return failed('the site connected before the flood lost its connection');
      if (junk.some((x) => x.startsWith('HTTP/1.1 2'))) return failed(`a junk TCP connection got a 2xx: ${junk.find((x) => x.startsWith('HTTP/1.1 2'))}`);
      return refused(
        `${summary}; /metrics counts ${refusedCounted} refused handshakes and ${limitedCounted} rate-limited; TWF_E_RATE_LIMITED (429 on HTTP) for ${sockets.filter((x) => x === 'TWF_E_RATE_LIMITED').length} of the sockets and ${http.filter((x) => x.startsWith('429')).length} of the nonce requests once the address's budget (burst ${limit.burst}, ${limit.perS}/s) was spent; the junk TCP connections got ${[...new Set(junk)].join(' / ')}; B cut off after ${junkAcked} junk messages; site A, connected before, was shown the next study and its answer accepted. Trade-off: on loopback every client is 127.0.0.1, so right after the flood a NEW handshake of the real site got ${fresh.status} too: sites behind one NAT share one budget with whoever floods from there (an open connection is not affected)`,
        'TWF_E_RATE_LIMITED',
      );
    } finally {
      raw?.close();
      await site?.close();
      await c.close();
    }
  },
};

// ----------------------------------------------------------------------------------- finding 10

const decompressionBombs: Attack = {
  name: 'decompression-bomb-import',
  finding: 10,
  expected:
    '`twinfed site import` of a 510 KB .nii.gz bomb (and an NRRD bomb, a 1 MB ratio bomb, a DICOM with lying Rows/Columns) is refused with TWF_E_IMPORT_TOO_LARGE within seconds, peak RSS far below 1 GiB, nothing stored',
  async run(ctx) {
    const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'));
    const site = join(ctx.dir, 'site');
    try {
      await enrolNewSite(url, site, 'Hospital A');
    } finally {
      await c.close();
    }
    const bombs = join(ctx.dir, 'incoming');
    mkdirSync(bombs);
    const ct = readFileSync(join(STS_DIR, '../../fixtures/formats/pydicom/CT_small.dcm'));
    const US = (elem: number) => Buffer.from([0x28, 0x00, elem, 0x00, 0x55, 0x53, 0x02, 0x00]); // (0028,elem) US, explicit VR LE
    const lie = Buffer.from(ct);
    lie.writeUInt16LE(65535, lie.indexOf(US(0x10)) + 8);
    lie.writeUInt16LE(65535, lie.indexOf(US(0x11)) + 8);
    const files: [string, Buffer][] = [
      // The finding: 1024x1024x512 uint8, 512 MiB of zeros in one gzip member (what gzip writes), about 510 KB.
      ['finding.nii.gz', await gzipOneMember(niftiHeader({ dims: [1024, 1024, 512], datatype: 2, bitpix: 8 }), 512 * MiB)],
      ['bomb.nrrd', nrrdGz([2048, 2048, 512], 'short', 512 * MiB)],
      // A header within the caps over a body inflating 1000:1: only the ratio rule can stop it.
      ['ratio.nii.gz', niftiGz({ dims: [1024, 1024, 255], datatype: 16, bitpix: 32 }, 1020 * MiB)],
      ['lying-header.dcm', lie],
    ];
    const dbPath = join(site, SITE_FILES.db);
    const skip = ['audit_log', 'audit_owner', '__drizzle_migrations', 'meta'];
    const before = tableCounts(dbPath, skip);
    const rows: string[] = [];
    for (const [name, bytes] of files) {
      const f = join(bombs, name);
      writeFileSync(f, bytes);
      const r = await twinfed(ctx.dir, ['site', 'import', f, '--data-dir', site, '--patient', 'P1', '--json'], 60_000);
      let row: { status?: string; detail?: string } = {};
      try {
        row = (JSON.parse(r.out.trimEnd().split('\n').pop() ?? '') as { rows: { status: string; detail: string }[] }).rows[0] ?? {}; // the summary line of the NDJSON
      } catch {
        row = { detail: firstLine(r.err) };
      }
      const what = `${name} (${(bytes.length / 1024).toFixed(0)} KB): exit ${r.code}, ${r.seconds.toFixed(1)} s, peak RSS ${r.maxRssMiB?.toFixed(0)} MiB`;
      if (row.status !== 'failed' || !row.detail?.startsWith('TWF_E_IMPORT_TOO_LARGE')) return failed(`${what}: ${row.status ?? '?'} ${row.detail ?? firstLine(r.err)}`);
      if (r.maxRssMiB === null || r.maxRssMiB > 600 || r.seconds > 20) return failed(`${what}: too slow or too much memory`);
      rows.push(`${name} ${(bytes.length / 1024).toFixed(0)} KB -> ${/: ([a-z ]+):/.exec(row.detail)?.[1] ?? '?'} in ${r.seconds.toFixed(1)} s, ${r.maxRssMiB.toFixed(0)} MiB peak`);
    }
    const after = tableCounts(dbPath, skip);
    const changed = Object.keys(after).filter((t) => after[t] !== before[t]);
    if (changed.length) return failed(`rows were stored: ${changed.map((t) => `${t} ${before[t]} -> ${after[t]}`).join(', ')}`);
    return refused(
      `each refused by the CLI (exit 3), peak RSS of the whole CLI process: ${rows.join('; ')}; no table of site.db changed (${Object.keys(after).length} checked)`,
      'TWF_E_IMPORT_TOO_LARGE',
    );
  },
};

// ----------------------------------------------------------------------------------- finding 11

const refusedEnrolment: Attack = {
  name: 'refused-enrolment-audited',
  finding: 11,
  expected: 'enrolment with an unknown, a used and an expired token is refused (TWF_E_ENROLMENT_TOKEN) and each refusal is in the coordinator audit log (token hashed, never stored)',
  async run(ctx) {
    const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'));
    try {
      const issue = async (name: string) => (await lead<{ token: string }>(url, 'POST', '/api/enrolment-tokens', { siteName: name })).json.token;
      const used = await issue('Hospital A');
      await enrolSite({ dataDir: join(ctx.dir, 'a'), coordinatorUrl: url, token: used });
      const expired = await issue('Hospital C');
      // A token issued long ago: its expiry is in the past (the lead cannot issue one shorter than 60 s).
      c.db.$client.prepare('update enrolment_tokens set expires_at_ms = ? where token_hash = ?').run(Date.now() - 1000, sha256Hex(expired));
      const tries = [
        ['unknown token', 'never-issued-token-0123456789abcdef'],
        ['already used', used],
        ['expired', expired],
      ] as const;
      const answers: string[] = [];
      for (const [what, token] of tries) {
        const r = await enrolSite({ dataDir: join(ctx.dir, `try-${what.replaceAll(' ', '-')}`), coordinatorUrl: url, token }).then(
          () => 'enrolled',
          (e: Error) => e.message,
        );
        if (!/401 TWF_E_ENROLMENT_TOKEN/.test(r)) return failed(`${what} token: ${r}`);
        answers.push(what);
      }
      const audit = await lead<{ action: string; detail: string | null; digest: string | null }[]>(url, 'GET', '/api/audit?limit=1000');
      const logged = audit.json.filter((e) => e.action === 'enrolment.refused');
      for (const [what, token] of tries) {
        if (!logged.some((e) => e.detail === `TWF_E_ENROLMENT_TOKEN: ${what}` && e.digest === sha256Hex(token)))
          return failed(`no audit entry "TWF_E_ENROLMENT_TOKEN: ${what}" with the token's hash (${logged.length} enrolment.refused entries)`);
      }
      const text = JSON.stringify(audit.json);
      if (tries.some(([, t]) => text.includes(t))) return failed('a token appears in clear in the audit log');
      if (c.engine.listSites().length !== 1) return failed(`${c.engine.listSites().length} sites enrolled; only the first use of the token should have`);
      return refused(
        `${answers.join(', ')} tokens answered 401 TWF_E_ENROLMENT_TOKEN; ${logged.length} enrolment.refused entries in GET /api/audit with the reason and the token's SHA-256 only; one site enrolled`,
        'TWF_E_ENROLMENT_TOKEN',
      );
    } finally {
      await c.close();
    }
  },
};

/**
 * The other side of finding 11: a refused enrolment is audited, and enrolment is reachable before
 * authentication, so a stranger adds audit rows. Only the per-address limit bounds it.
 */
const enrolmentJunk: Attack = {
  name: 'enrolment-junk-audit-growth',
  finding: null,
  expected:
    'refused enrolments are audited (finding 11) without a stranger adding a row per junk request: rows are coalesced per kind and minute, every refusal is counted in /metrics, the per-address limit answers 429',
  async run(ctx) {
    const limit = { burst: 120, perS: 4 };
    const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'), { preAuthRateLimit: limit });
    try {
      const dbPath = join(c.config.dataDir, 'coordinator.db');
      const rows0 = c.engine.audit.entries().length;
      const bytes0 = dbBytes(dbPath);
      const key = Buffer.alloc(32, 7).toString('base64');
      const t0 = performance.now();
      const answers = await pool(
        Array.from({ length: 200 }, (_, i) => i),
        10,
        async (i) => {
          const res = await fetch(new URL('/api/enrol', url), {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ token: `junk-token-${String(i).padStart(8, '0')}-0123456789`, protocolVersion: PROTOCOL_VERSION, ed25519PublicKey: key, x25519PublicKey: key }),
          });
          return res.status;
        },
      );
      const seconds = (performance.now() - t0) / 1000;
      const rows = c.engine.audit.entries().length - rows0;
      const kib = (dbBytes(dbPath) - bytes0) / 1024;
      const n401 = answers.filter((x) => x === 401).length;
      const n429 = answers.filter((x) => x === 429).length;
      const metrics = await (await fetch(new URL('/metrics', url))).text();
      const counted = Number(/twinfed_enrolments_refused_total\{code="TWF_E_ENROLMENT_TOKEN"\} (\d+)/.exec(metrics)?.[1] ?? '0');
      if (answers.some((x) => x === 201)) return failed(`a junk token enrolled a site`);
      if (rows > 3) return failed(`200 junk enrolments added ${rows} audit rows (+${kib.toFixed(0)} KiB): one per request`);
      if (counted !== n401) return failed(`${n401} refusals but /metrics counts ${counted}`);
      return refused(
        `200 junk enrolments from one address in ${seconds.toFixed(1)} s: ${n401} refused (TWF_E_ENROLMENT_TOKEN), all counted in /metrics, written as ${rows} coalesced audit row(s) (+${kib.toFixed(0)} KiB); then ${n429} answered 429 TWF_E_RATE_LIMITED`,
        'TWF_E_RATE_LIMITED',
      );
    } finally {
      await c.close();
    }
  },
};

// ----------------------------------------------------------------------------------- finding 12

const pathStudyIds: Attack = {
  name: 'study-id-as-path',
  finding: 12,
  expected:
    "a coordinator announcing studies '../../etc', 'a/b', '..' (in the envelope or only in the manifest) or completing one is refused as malformed by a real site before any file use: nothing created in or above its data folder",
  async run(ctx) {
    const r = await rosterOfThree(ctx, 1);
    try {
      const a = r.sites[0];
      const before = tree(ctx.dir);
      const studies0 = tableCounts(join(a.dir, SITE_FILES.db)).studies;
      const evil = (id: string): { manifest: StudyManifest; manifestHash: string; status: string } => {
        const manifest = { ...r.manifest, studyId: id, title: `evil ${id}` };
        return { manifest, manifestHash: hashOf(manifest), status: 'running' };
      };
      const sent = [
        r.c.engine.sendAsCoordinator(a.node.siteId, 'study.announce', '../../etc', null, evil('../../etc')),
        r.c.engine.sendAsCoordinator(a.node.siteId, 'study.announce', 'a/b', null, evil('a/b')),
        r.c.engine.sendAsCoordinator(a.node.siteId, 'study.announce', '..', null, evil('..')),
        r.c.engine.sendAsCoordinator(a.node.siteId, 'study.announce', null, null, evil('../../etc')),
        // The message after which a site writes models/STUDY/: for a study whose id is a path.
        r.c.engine.sendAsCoordinator(a.node.siteId, 'study.completed', '../../etc', null, { rounds: 1, finalVersion: 0 }),
      ];
      if (sent.some((x) => !x)) return failed('the site was not connected');
      await waitFor(() => rejections(a, 'TWF_E_MALFORMED').length >= sent.length, 'the site to refuse all five', 10_000, 20);
      const malformed = rejections(a, 'TWF_E_MALFORMED');
      const created = tree(ctx.dir).filter((p) => !before.includes(p));
      if (created.length) return failed(`files appeared: ${created.join(', ')}`);
      if (tableCounts(join(a.dir, SITE_FILES.db)).studies !== studies0) return failed('a study row was stored');
      if (auditOf(a).some((e) => e.action === 'msg.received' && e.studyId !== null && !/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(e.studyId)))
        return failed('a path-like study id was accepted into the site log');
      return refused(
        `all ${sent.length} signed envelopes refused as malformed (${malformed.filter((e) => e.action === 'msg.rejected').length} at the envelope's studyId, ${malformed.filter((e) => e.action === 'msg.failed').length} at the manifest's); no new file or folder under the data folder, its parent or grandparent (${before.length} paths compared); no study row`,
        'TWF_E_MALFORMED',
      );
    } finally {
      await r.close();
    }
  },
};

// ----------------------------------------------------------------------------------- finding 13

const SECRET = 'SQLITE_CORRUPT at /var/lib/twinfed/coordinator.db: admin token hunter2-0123456789';

const errorHygiene: Attack = {
  name: 'client-and-internal-errors',
  finding: 13,
  expected:
    'bad JSON, wrong types, a huge body, unknown routes and bad ids get 4xx with a catalogue code; a forced internal error reaches neither a REST client nor a site (ack, reject, audit) with its message',
  async run(ctx) {
    const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'));
    let raw: RawSite | null = null;
    try {
      await enrolNewSite(url, join(ctx.dir, 'a'), 'Hospital A');
      const auth = { authorization: 'Bearer test-admin-token-0123456789' };
      const json = { 'content-type': 'application/json' };
      const call = async (method: string, path: string, body?: string, headers: Record<string, string> = { ...auth, ...json }) => {
        const res = await fetch(new URL(path, url), { method, headers, ...(body !== undefined ? { body } : {}) });
        return { status: res.status, text: await res.text() };
      };
      const cases: [string, () => ReturnType<typeof call>][] = [
        ['bad JSON', () => call('POST', '/api/studies', '{"title":')],
        ['wrong types', () => call('POST', '/api/studies', JSON.stringify({ ...tinySpec(), rounds: 'two', minSites: '3' }))],
        ['2 MiB body', () => call('POST', '/api/studies', JSON.stringify({ title: 'x'.repeat(2 * MiB) }))],
        ['text/plain body', () => call('POST', '/api/studies', 'hello', { ...auth, 'content-type': 'text/plain' })],
        ['unknown route', () => call('GET', '/api/nothing-here')],
        ['path as study id', () => call('GET', '/api/studies/..%2F..%2Fetc')],
        ['space in study id', () => call('GET', '/api/studies/a%20b/manifest')],
        ['unknown study', () => call('GET', '/api/studies/study-00000000')],
        ['bad round', () => call('GET', '/api/studies/study-00000000/rounds/abc')],
        ['path as site id', () => call('POST', '/api/sites/..%2Fx/revoke', '{}')],
        ['no token', () => call('GET', '/api/studies', undefined, {})],
        ['junk handshake', () => call('POST', '/api/handshake', JSON.stringify({ siteId: '../x' }), json)],
        ['junk enrolment', () => call('POST', '/api/enrol', JSON.stringify({ token: 5 }), json)],
      ];
      const seen: string[] = [];
      for (const [what, f] of cases) {
        const r = await f();
        let code = '';
        try {
          code = (JSON.parse(r.text) as { code?: string }).code ?? '';
        } catch {
          /* not JSON: caught below */
        }
        if (r.status < 400 || r.status >= 500 || !(code in WIRE_ERRORS) || /"stack"|node_modules|\/work\//.test(r.text)) return failed(`${what}: ${r.status} ${r.text.slice(0, 200)}`);
        seen.push(`${what} ${r.status}`);
      }

      // Forced internal errors: a REST route, the unauthenticated handshake route, a socket handshake, a site message.
      const leaks: string[] = [];
      const printed: string[] = [];
      const realError = console.error;
      console.error = (...a: unknown[]) => void printed.push(a.map(String).join(' '));
      const engine = c.engine as unknown as Record<string, unknown>;
      const boom = () => {
        throw new Error(SECRET);
      };
      try {
        for (const [method, name, path, body, headers] of [
          ['GET', 'listStudies', '/api/studies', undefined, auth],
          ['POST', 'issueChallenge', '/api/handshake', JSON.stringify({ siteId: 'site-x' }), json],
        ] as const) {
          engine[name] = boom;
          const r = await call(method, path, body, headers);
          delete engine[name];
          if (r.status !== 500 || !r.text.includes('TWF_E_INTERNAL') || r.text.includes('hunter2') || r.text.includes('SQLITE')) leaks.push(`${path}: ${r.status} ${r.text}`);
        }
        engine.authenticateHandshake = boom;
        const s = io(url, { auth: { siteId: 'site-x' }, transports: ['websocket'], reconnection: false, forceNew: true });
        const e = await new Promise<Error & { data?: unknown }>((res) => s.once('connect_error', res));
        s.disconnect();
        delete engine.authenticateHandshake;
        if (`${e.message} ${JSON.stringify(e.data)}`.includes('hunter2') || (e.data as { code?: string })?.code !== 'TWF_E_INTERNAL')
          leaks.push(`socket handshake: ${e.message} ${JSON.stringify(e.data)}`);
      } finally {
        console.error = realError;
        delete engine.listStudies;
        delete engine.issueChallenge;
        delete engine.authenticateHandshake;
      }
      raw = await RawSite.create(url, join(ctx.dir, 'a'));
      await raw.connected();
      engine.dispatch = async () => boom();
      const ack = await raw.hello();
      delete engine.dispatch;
      const reject = await raw.next('reject', 5000);
      const rejectBody = Buffer.from(reject.body).toString('utf8');
      const auditText = JSON.stringify(c.engine.audit.entries());
      if (ack.ok || ack.code !== 'TWF_E_INTERNAL' || JSON.stringify(ack).includes('hunter2')) leaks.push(`site ack: ${JSON.stringify(ack)}`);
      if (rejectBody.includes('hunter2')) leaks.push(`reject envelope: ${rejectBody}`);
      if (auditText.includes('hunter2')) leaks.push('the audit log (GET /api/audit) holds the internal message');
      if (leaks.length) return failed(`internal message left the process: ${leaks.join('; ')}`);
      const kept = printed.filter((l) => l.includes('hunter2')).length;
      return refused(
        `${seen.join(', ')}: all 4xx with a TWF_E_ code, no stack or path; forced internal errors on GET /api/studies, POST /api/handshake, the socket handshake and a site's hello answered TWF_E_INTERNAL with only a log reference (${(ack as Extract<Ack, { ok: false }>).detail}); the message stayed in the coordinator's own log (${kept} lines)`,
        'TWF_E_INTERNAL',
      );
    } finally {
      raw?.close();
      await c.close();
    }
  },
};

// ----------------------------------------------------------------------------------- finding 14

const restartReconnect: Attack = {
  name: 'coordinator-restart-reconnect',
  finding: 14,
  expected:
    'after the coordinator process is stopped (SIGTERM: server-side disconnect) and restarted on its port, real site nodes reconnect by themselves: GET /api/sites shows them connected within seconds',
  async run(ctx) {
    const port = await freePort();
    const dataDir = join(ctx.dir, 'coordinator');
    let coord = coordinatorProcess(dataDir, port);
    const sites: OpenSite[] = [];
    try {
      await coord.up;
      for (const d of ['A', 'B', 'C']) sites.push(await enrolledSite(coord.url, join(ctx.dir, d), `Hospital ${d}`));
      for (const s of sites) s.node.connect();
      const allConnected = async () => {
        const r = await lead<{ connected: boolean }[]>(coord.url, 'GET', '/api/sites').catch(() => null);
        return r?.status === 200 && r.json.length === 3 && r.json.every((s) => s.connected);
      };
      await waitFor(allConnected, 'three sites connected', 20_000, 50);
      await coord.stop('SIGTERM');
      await waitFor(() => sites.every((s) => !s.node.connected), 'the sites to see the disconnect', 5000, 20);
      coord = coordinatorProcess(dataDir, port);
      await coord.up;
      const t0 = performance.now();
      const ok = await waitFor(allConnected, 'the sites to reconnect', 30_000, 50).catch(() => false);
      const s = (performance.now() - t0) / 1000;
      if (!ok) return failed('the sites did not reconnect within 30 s of the restart');
      const reconnects = sites.map((x) => x.node.audit.entries().filter((e) => e.action === 'msg.sent' && e.msgType === 'hello').length);
      return refused(
        `SIGTERM closed every connection server-side; ${s.toFixed(1)} s after the new process answered /healthz, GET /api/sites showed all 3 connected again (hellos per site: ${reconnects.join(', ')})`,
        null,
      );
    } finally {
      for (const x of sites) await x.close();
      await coord.stop('SIGKILL');
    }
  },
};

const stoppedStudyJoins: Attack = {
  name: 'approval-after-study-stopped',
  finding: 14,
  expected:
    "officers approve a study the lead already stopped (site A heard of the stop, B's notice was lost in transit, C was offline): over 10 s none sends study.join more than once, and the audit logs stay small",
  async run(ctx) {
    const r = await rosterOfThree(ctx, 3, true);
    let c2: OpenSite | null = null;
    try {
      const [a, b, c] = r.sites;
      await c.close(); // C is offline when the lead stops the study
      // B's study.state notice is lost in transit (the coordinator logs it sent; it never arrives).
      const transport = (r.c.engine as unknown as { transport: { send(siteId: string, env: Envelope): boolean } }).transport;
      const deliver = transport.send.bind(transport);
      transport.send = (siteId, env) => (siteId === b.node.siteId && env.header.type === 'study.state' ? true : deliver(siteId, env));
      const stop = await lead(r.url, 'POST', `/api/studies/${r.studyId}/stop`, {});
      if (stop.status !== 200) return failed(`stop: ${stop.status}`);
      await waitFor(() => studyStatus(a, r.studyId) === 'stopped', 'A to learn of the stop', 10_000, 20);
      transport.send = deliver;
      // Each officer approves the manifest afterwards; C's from the command line while its node is down.
      SiteNode.approve(a.node.db, a.node.audit, r.studyId, 'Officer A', r.manifestHash);
      SiteNode.approve(b.node.db, b.node.audit, r.studyId, 'Officer B', r.manifestHash);
      const store = await openSiteStore(c.dir);
      try {
        SiteNode.approve(store.db, store.audit, r.studyId, 'Officer C', r.manifestHash);
      } finally {
        store.close();
      }
      c2 = await openSite(c.dir);
      const nodes = [a, b, c2];
      const rows = () => [r.c.engine.audit.entries().length, ...nodes.map((s) => s.node.audit.entries().length)];
      const rows0 = rows();
      c2.node.connect();
      await sleep(10_000);
      const rows1 = rows();
      const joins = nodes.map((s) => s.node.audit.entries().filter((e) => e.action === 'msg.sent' && e.msgType === 'study.join').length);
      const refusedJoins = r.c.engine.audit
        .entries()
        .filter((e) => e.action === 'msg.rejected' && e.msgType === 'study.join')
        .map((e) => e.detail?.split(':')[0] ?? '');
      const refusedSummary = [...new Set(refusedJoins)].map((code) => `${refusedJoins.filter((x) => x === code).length}x ${code}`).join(', ');
      const growth = `audit growth over 10 s: coordinator +${rows1[0] - rows0[0]}, A +${rows1[1] - rows0[1]}, B +${rows1[2] - rows0[2]}, C +${rows1[3] - rows0[3]} rows`;
      const said = `study.join sent by A ${joins[0]}, B ${joins[1]}, C ${joins[2]} times (refused: ${refusedSummary || 'none'}); statuses ${nodes.map((s) => studyStatus(s, r.studyId)).join('/')}; ${growth}`;
      if (joins.some((n) => n > 1)) return failed(said);
      if (rows1.some((n, i) => n - rows0[i] > 20)) return failed(said);
      if (joins[1] !== 1 || refusedJoins[0] !== 'TWF_E_STUDY_STATE') return failed(`B, which missed the stop, should have tried once and been refused: ${said}`);
      return refused(said, 'TWF_E_STUDY_STATE');
    } finally {
      await c2?.close();
      await r.close();
    }
  },
};

const wrongHashApproval: Attack = {
  name: 'approve-with-wrong-hash',
  finding: 14,
  expected:
    '`twinfed site approve STUDY --hash WRONG` is refused (TWF_E_APPROVAL_HASH, not "the manifest changed"), says to review the manifest, does not print the right hash to paste, approves nothing',
  async run(ctx) {
    const r = await rosterOfThree(ctx, 1);
    try {
      const a = r.sites[0];
      const wrong = sha256Hex('a manifest the officer never saw');
      const bad = await twinfed(ctx.dir, ['site', 'approve', r.studyId, '--data-dir', a.dir, '--officer', 'Officer A', '--hash', wrong]);
      const said = bad.out + bad.err;
      const approvals = tableCounts(join(a.dir, SITE_FILES.db)).approvals;
      if (bad.code === 0 || !said.includes('TWF_E_APPROVAL_HASH') || /manifest changed/.test(said) || approvals !== 0) return failed(`exit ${bad.code}, ${approvals} approvals: ${said.slice(0, 300)}`);
      if (said.includes(r.manifestHash.slice(0, 12))) return failed(`the refusal prints the announced manifest's hash: ${said.slice(0, 300)}`);
      if (!/review the manifest/.test(said)) return failed(`the refusal does not send the officer to the manifest: ${said.slice(0, 300)}`);
      // The same command with the hash the officer reviewed works: the refusal is about the hash alone.
      const good = await twinfed(ctx.dir, ['site', 'approve', r.studyId, '--data-dir', a.dir, '--officer', 'Officer A', '--hash', r.manifestHash]);
      if (good.code !== 0) return failed(`the right hash was refused too: ${good.err.slice(0, 200)}`);
      return refused(
        `exit ${bad.code}: "${firstLine(bad.err).slice(0, 150)}…"; no hash of the announced manifest in the output, nothing approved; with the reviewed hash the same command approves (exit 0)`,
        'TWF_E_APPROVAL_HASH',
      );
    } finally {
      await r.close();
    }
  },
};

// ----------------------------------------------------------------------------------- finding 15

const staleMessage: Attack = {
  name: 'stale-coordinator-message',
  finding: 15,
  expected: 'a coordinator message signed with its real key but timestamped 10 min in the past or future is refused by the site (TWF_E_STALE_MESSAGE in its audit log) and has no effect',
  async run(ctx) {
    const r = await rosterOfThree(ctx, 1);
    try {
      const a = r.sites[0];
      const signer = operatorSigner(r.c);
      const stop = { manifestHash: r.manifestHash, state: 'stopped' };
      const msg = (nowMs?: number) => sealEnvelope(signer, { to: a.node.siteId, type: 'study.state', studyId: r.studyId, round: null, body: stop, ...(nowMs ? { nowMs } : {}) });
      const status0 = studyStatus(a, r.studyId);
      emitToSite(r.c, a.node.siteId, msg(Date.now() - 10 * 60_000));
      emitToSite(r.c, a.node.siteId, msg(Date.now() + 10 * 60_000));
      await waitFor(() => rejections(a, 'TWF_E_STALE_MESSAGE').length === 2, 'A to refuse both', 10_000, 20);
      if (studyStatus(a, r.studyId) !== status0) return failed(`the stale message changed the study to ${studyStatus(a, r.studyId)}`);
      // The same message, fresh, is accepted: only the timestamp was wrong.
      emitToSite(r.c, a.node.siteId, msg());
      const ok = await waitFor(() => studyStatus(a, r.studyId) === 'stopped', 'the fresh message to apply', 10_000, 20).catch(() => false);
      if (!ok) return failed('the fresh control message was not applied either; the test proves nothing');
      return refused(
        `past and future timestamps (±10 min, skew ±${a.node.config.clockSkewMs / 60_000} min) refused: "${rejections(a, 'TWF_E_STALE_MESSAGE')[0].detail!.slice(0, 90)}…"; study stayed ${status0}; the same message fresh was applied`,
        'TWF_E_STALE_MESSAGE',
      );
    } finally {
      await r.close();
    }
  },
};

const wrongRecipient: Attack = {
  name: 'message-for-another-site',
  finding: 15,
  expected: "a coordinator message addressed to site A, delivered on site B's connection, is refused by B (TWF_E_WRONG_RECIPIENT) and has no effect; A accepts the very same envelope",
  async run(ctx) {
    const r = await rosterOfThree(ctx, 2);
    try {
      const [a, b] = r.sites;
      const env = sealEnvelope(operatorSigner(r.c), { to: a.node.siteId, type: 'study.state', studyId: r.studyId, round: null, body: { manifestHash: r.manifestHash, state: 'stopped' } });
      const status0 = studyStatus(b, r.studyId);
      emitToSite(r.c, b.node.siteId, env);
      await waitFor(() => rejections(b, 'TWF_E_WRONG_RECIPIENT').length === 1, 'B to refuse it', 10_000, 20);
      if (studyStatus(b, r.studyId) !== status0) return failed(`B applied a message for A: study now ${studyStatus(b, r.studyId)}`);
      emitToSite(r.c, a.node.siteId, env);
      const ok = await waitFor(() => studyStatus(a, r.studyId) === 'stopped', 'A to apply it', 10_000, 20).catch(() => false);
      if (!ok) return failed('A did not accept its own message either; the test proves nothing');
      return refused(`B refused it ("${rejections(b, 'TWF_E_WRONG_RECIPIENT')[0].detail}") and stayed ${status0}; A applied the identical envelope`, 'TWF_E_WRONG_RECIPIENT');
    } finally {
      await r.close();
    }
  },
};

const restoredFromBackup: Attack = {
  name: 'site-restored-from-backup',
  finding: 15,
  expected:
    'a site whose data folder is restored from a copy taken during round 1 (after it ran on) is not locked out: it logs seq.resync, reconnects and takes part in round 2 to the same final model',
  async run(ctx) {
    const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'));
    const sites: OpenSite[] = [];
    let restored: OpenSite | null = null;
    let running = true;
    const shutDown = async () => {
      if (!running) return;
      running = false;
      await restored?.close();
      for (const s of sites) await s.close();
      await c.close();
    };
    const dirA = join(ctx.dir, 'A');
    const backupDir = join(ctx.dir, 'backup-of-A');
    const ev: { backup: Promise<unknown> | null; stopped: Promise<void> | null } = { backup: null, stopped: null };
    try {
      const a = await enrolledSite(url, dirA, 'Hospital A', DATA[0], {
        // The hospital's nightly copy of the folder happens to run while round 1 is under way.
        onStep: (e) => {
          if (e.round === 1 && e.step === 'setup-sent' && !ev.backup) {
            mkdirSync(backupDir);
            for (const f of [SITE_FILES.config, SITE_FILES.identity]) copyFileSync(join(dirA, f), join(backupDir, f));
            ev.backup = a.node.db.$client.backup(join(backupDir, SITE_FILES.db));
          }
        },
        // It runs on to the end of round 1, then the machine goes down.
        onApplied: (e) => {
          if (e.round === 1 && !ev.stopped) ev.stopped = a.close();
        },
      });
      sites.push(a);
      for (const d of DATA.slice(1)) sites.push(await enrolledSite(url, join(ctx.dir, d.name), `Hospital ${d.name}`, d));
      const { studyId, manifestHash } = await createAndStart(url, tinySpec({ rounds: 2, minSites: 3, roundDeadlineS: 120 }));
      for (const s of sites) s.node.connect();
      await waitFor(() => sites.every((s) => studyStatus(s, studyId) !== null), 'announcements', 20_000, 50);
      for (const s of sites) SiteNode.approve(s.node.db, s.node.audit, studyId, 'officer', manifestHash);
      await waitFor(() => ev.stopped !== null, 'A to apply round 1 and go down', 90_000, 50);
      await ev.stopped;
      await ev.backup;
      const copyDb = new Database(join(backupDir, SITE_FILES.db), { readonly: true });
      const seqAtBackup = Number((copyDb.prepare("select value from meta where key = 'seq'").get() as { value: string }).value);
      copyDb.close();
      const seqSeen = c.engine.issueChallenge(a.node.siteId).lastSeqSeen;
      ctx.log(`A down; backup seq ${seqAtBackup}, coordinator saw ${seqSeen}`);

      // Restore the copy over the folder and start the node again.
      for (const f of [SITE_FILES.db, `${SITE_FILES.db}-wal`, `${SITE_FILES.db}-shm`, SITE_FILES.models]) rmSync(join(dirA, f), { recursive: true, force: true });
      copyFileSync(join(backupDir, SITE_FILES.db), join(dirA, SITE_FILES.db));
      restored = await openSite(dirA);
      restored.node.connect();
      const done = await waitFor(() => c.engine.studyStatus(studyId).state === 'completed', 'study completion with the restored site', 90_000, 100).catch(() => false);
      const resync = restored.node.audit.entries().find((e) => e.action === 'seq.resync');
      const rejected = restored.node.audit
        .entries()
        .filter((e) => e.action === 'msg.rejected' || e.action === 'msg.failed')
        .map((e) => e.detail?.split(':')[0]);
      if (!resync) return failed(`no seq.resync in the restored site's log (backup seq ${seqAtBackup}, coordinator saw ${seqSeen})`);
      if (!done) {
        const st = c.engine.studyStatus(studyId);
        return failed(
          `the study did not complete after the restore: round ${st.currentRound}, ${JSON.stringify(st.roundSummaries.map((x) => ({ r: x.round, s: x.state, p: x.phase, done: x.completed, why: x.failReason })))}`,
        );
      }
      const st = c.engine.studyStatus(studyId);
      const last = st.roundSummaries.filter((x) => x.state === 'closed').at(-1)!;
      if (!last.completed.includes(a.node.siteId)) return failed(`the restored site did not contribute to round ${last.round} (${last.completed.join(', ')})`);
      await waitFor(() => [restored!, ...sites.slice(1)].every((s) => s.node.latestModel(studyId)?.version === 2), 'final models', 30_000, 50);
      const digests = new Set([restored, ...sites.slice(1)].map((s) => s.node.latestModel(studyId)!.digest));
      if (digests.size !== 1) return failed('the restored site holds another final model');
      // The audit cross-check explains the messages the backup lost by the resync gap.
      await shutDown();
      const cmp = await twinfed(ctx.dir, ['audit', 'compare', '--site-db', join(dirA, SITE_FILES.db), '--coordinator-db', join(ctx.dir, 'coordinator', 'coordinator.db')]);
      const gap = /(\d+) coordinator entries inside a seq.resync gap/.exec(cmp.out)?.[1];
      if (cmp.code !== 0) return failed(`audit compare of the restored site: exit ${cmp.code}: ${cmp.out.slice(0, 600)}`);
      return refused(
        `backup taken at seq ${seqAtBackup}, the coordinator had accepted ${seqSeen}; after the restore A logged seq.resync ${resync.detail}, contributed to round ${last.round} (${st.roundSummaries.length} rounds, ${st.roundSummaries.filter((x) => x.state === 'failed').length} failed), holds the same final model (coordinator messages it refused or failed on: ${rejected.join(', ') || 'none'}); audit compare passes, ${gap} coordinator entries explained by the resync gap`,
        null,
      );
    } finally {
      await shutDown();
    }
  },
};

// ------------------------------------------------------------------------ revocation, eviction

const revokedSite: Attack = {
  name: 'revoked-site-reconnects',
  finding: null,
  expected: 'a revoked site is cut off and refused at connect (TWF_E_SITE_REVOKED): the running node fires onFatal and `twinfed site run` exits non-zero',
  async run(ctx) {
    const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'));
    let site: OpenSite | null = null;
    try {
      const fatal: { e: { code: string; detail: string } | null } = { e: null };
      site = await enrolledSite(url, join(ctx.dir, 'a'), 'Hospital A', undefined, { onFatal: (e) => (fatal.e = e) });
      site.node.connect();
      await connectedAt(c, [site.node.siteId]);
      const rv = await lead(url, 'POST', `/api/sites/${site.node.siteId}/revoke`, { reason: 'stolen laptop' });
      if (rv.status !== 200) return failed(`revoke: ${rv.status}`);
      const got = await waitFor(() => fatal.e, 'onFatal', 15_000, 20).catch(() => null);
      if (got?.code !== 'TWF_E_SITE_REVOKED') return failed(`the running node did not stop on revocation (onFatal: ${JSON.stringify(got)}; connected ${site.node.connected})`);
      await site.close();
      const run = await twinfed(ctx.dir, ['site', 'run', '--data-dir', join(ctx.dir, 'a')], 60_000);
      if (run.code === 0 || run.code === null || !/TWF_E_SITE_REVOKED/.test(run.err)) return failed(`site run: exit ${run.code}: ${run.err.slice(-300)}`);
      const m = await metrics(url);
      return refused(
        `the connected node was cut off and its reconnect refused, onFatal fired (${got.code}); \`twinfed site run\` exited ${run.code} after ${run.seconds.toFixed(1)} s ("${run.err
          .split('\n')
          .find((l) => l.includes('fatal'))
          ?.slice(0, 80)}"); /metrics counts ${m.get('twinfed_connections_refused_total{code="TWF_E_SITE_REVOKED"}') ?? 0} revoked handshakes`,
        'TWF_E_SITE_REVOKED',
      );
    } finally {
      await site?.close();
      await c.close();
    }
  },
};

const evictedSite: Attack = {
  name: 'evicted-site-next-key',
  finding: null,
  expected: 'after the lead evicts a roster site, the next study-key epoch is sealed without it, it is sent no key, and its join is refused (TWF_E_EVICTED)',
  async run(ctx) {
    const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'));
    const parts: RawParticipant[] = [];
    try {
      for (const d of ['a', 'b', 'c', 'd']) await enrolNewSite(url, join(ctx.dir, d), `Hospital ${d.toUpperCase()}`);
      const s = await createAndStart(url, tinySpec({ rounds: 1, minSites: 3 }));
      for (const d of ['a', 'b', 'c', 'd']) {
        const raw = await RawSite.create(url, join(ctx.dir, d));
        await raw.connected();
        await raw.hello();
        await raw.next('study.announce');
        parts.push(await new RawParticipant(raw, s.manifest, s.manifestHash).init());
      }
      const [a, , , d] = parts;
      for (const p of parts) if (!(await p.join(50)).ok) return failed(`${p.siteId} could not join`);
      const e1 = await a.deal();
      if (!e1.ack.ok) return failed(`epoch 1: ${JSON.stringify(e1.ack)}`);
      if ((await d.acceptKey()) !== 1) return failed('D was not given epoch 1 before its eviction');
      const ev = await lead(url, 'POST', `/api/studies/${s.studyId}/sites/${d.siteId}/evict`, { reason: 'data-use breach' });
      if (ev.status !== 200) return failed(`evict: ${ev.status} ${JSON.stringify(ev.json)}`);
      const e2 = await a.deal();
      if (!e2.ack.ok || e2.epoch !== 2) return failed(`epoch 2: ${JSON.stringify(e2)}`);
      const epoch = c.db.$client.prepare('select recipients_json r from key_epochs where study_id = ? and epoch = 2').get(s.studyId) as { r: string };
      const sealedFor = (c.db.$client.prepare('select site_id from sealed_keys where study_id = ? and epoch = 2').all(s.studyId) as { site_id: string }[]).map((x) => x.site_id);
      if ((JSON.parse(epoch.r) as string[]).includes(d.siteId) || sealedFor.includes(d.siteId)) return failed(`epoch 2 is for ${epoch.r}, sealed for ${sealedFor.join(',')}`);
      await parts[1].acceptKey(); // B's epoch 1
      if ((await parts[1].acceptKey()) !== 2) return failed('B did not get epoch 2');
      const dKeys = d.raw.inbox.filter((x) => x.header.type === 'keys.deliver').length;
      const again = await d.join(50);
      if (dKeys !== 0 || again.ok || again.code !== 'TWF_E_EVICTED') return failed(`D got ${dKeys} more keys; its join answered ${JSON.stringify(again)}`);
      return refused(
        `epoch 2 was requested and sealed for ${sealedFor.length} sites (${(JSON.parse(epoch.r) as string[]).length} recipients, not D); B received it, D received no key after epoch 1 and its join was refused`,
        'TWF_E_EVICTED',
      );
    } finally {
      for (const p of parts) p.raw.close();
      await c.close();
    }
  },
};

/** Operations and audit findings of the 2026-11-27 review (8-15), plus revocation and eviction. */
export const OPERATIONS_ATTACKS: Attack[] = [
  auditTampering,
  connectionFlood,
  decompressionBombs,
  refusedEnrolment,
  enrolmentJunk,
  pathStudyIds,
  errorHygiene,
  restartReconnect,
  stoppedStudyJoins,
  wrongHashApproval,
  staleMessage,
  wrongRecipient,
  restoredFromBackup,
  revokedSite,
  evictedSite,
];
