import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuditLog } from '@twinfed/shared/audit/index';
import { generateIdentity } from '@twinfed/shared/crypto/identity';
import { initSodium } from '@twinfed/shared/crypto/sodium';
import { parseLalehCsv } from '@twinfed/shared/twin/index';
import { openSiteDb, type SiteDb } from '../db/index.js';
import { TwinService } from '../twin/service.js';
import { LALEH_MAPPING, mapMeasurementCsv } from './csv-mapping.js';
import { importPath } from './index.js';

// Two ids in the Laleh et al. layout that are the same number once read as a double (spacing at
// 8.6e18 is 1024): read as floats they would merge two patients and print as 8622218669685091000.
const A = '8.6222186696850913E+18';
const B = '8.6222186696850912E+18';
const CSV = [
  'Patient_Anonmyized,Treatment_Day,TargetLesionLongDiam_mm,Study_Arm',
  `${A},-5,30,Arm_1`,
  `${A},40,28,Arm_1`,
  `${A},80,25,Arm_1`,
  `${B},-3,50,Arm_2`,
  `${B},42,55,Arm_2`,
  `${B},85,61,Arm_2`,
  `0042,0,10,Arm_1`,
  `0042,30,11,Arm_1`,
].join('\n');

describe('patient ids stay strings in every CSV reader', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twf-ids-'));
  let db: SiteDb;
  let audit: AuditLog;
  before(async () => {
    await initSodium();
    const id = generateIdentity();
    db = openSiteDb(join(dir, 'site.db'));
    audit = new AuditLog(db, 'site-test', id.ed25519SecretKey, id.ed25519PublicKey);
  });
  after(() => {
    db?.$client.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the two ids are one number as a double (the premise of this test)', () => {
    assert.equal(Number(A), Number(B));
  });

  it('mapMeasurementCsv (site import) and parseLalehCsv (twin evaluate) keep them verbatim and apart', () => {
    const mapped = mapMeasurementCsv(CSV, LALEH_MAPPING);
    assert.deepEqual(mapped.patients.map((p) => p.patientId).sort(), ['0042', B, A].sort());
    assert.equal(mapped.patients.find((p) => p.patientId === A)!.measurements.length, 3);
    const cohort = parseLalehCsv(CSV);
    assert.deepEqual(cohort.map((p) => p.id).sort(), ['0042', B, A].sort());
  });

  it('site import stores them as written, and each patient gets its own twin', async () => {
    const file = join(dir, 'ids.csv');
    writeFileSync(file, CSV);
    const r = await importPath(db, audit, file);
    assert.deepEqual(r.refits.map((x) => x.patientId).sort(), ['0042', B, A].sort());
    const ids = (db.$client.prepare('select patient_id id, typeof(patient_id) t from twin_patients order by patient_id').all() as { id: string; t: string }[]).map((x) => `${x.id}:${x.t}`);
    assert.deepEqual(ids, ['0042:text', `${B}:text`, `${A}:text`]);
    const twin = new TwinService(db, audit);
    assert.deepEqual(twin.observations(A).days, [-5, 40, 80]);
    assert.deepEqual(twin.observations(B).days, [-3, 42, 85]);
  });
});
