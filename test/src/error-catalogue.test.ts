import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WireError, WIRE_ERRORS, defineErrors, errorClass, isErrorCatalogue } from '@twinfed/protocols';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
interface Report {
  catalogues: { pkg: string; name: string; file: string; codes: { code: string; message: string; status?: number }[] }[];
  uncatalogued: { code: string; files: string[] }[];
  duplicated: { code: string; catalogues: string[] }[];
  inSource: string[];
  stale: boolean;
}
const report = JSON.parse(execFileSync(process.execPath, [resolve(ROOT, 'scripts/gen-error-docs.mjs'), '--json'], { encoding: 'utf8' })) as Report;

describe('error catalogues', () => {
  it('every TWF_E_ code in the source is in exactly one catalogue', () => {
    assert.ok(report.inSource.length > 50, 'the source scan found the codes');
    assert.deepEqual(report.uncatalogued, [], 'codes in no catalogue: add each to the errors.ts (defineErrors) of the package that raises it');
    assert.deepEqual(report.duplicated, [], 'codes in two catalogues: keep the one of the lowest package and import it from there');
  });

  it('every package with errors has its catalogue in the one defineErrors shape', () => {
    const names = report.catalogues.map((c) => `${c.pkg}:${c.name}`);
    for (const n of [
      'protocols:WIRE_ERRORS',
      'shared:HE_ERRORS',
      'shared:IMAGING_ERRORS',
      'shared:RADIOMICS_ERRORS',
      'shared:SECAGG_ERRORS',
      'coordinator:COORDINATOR_ERRORS',
      'site-node:SITE_ERRORS',
      'cli:CLI_ERRORS',
    ])
      assert.ok(names.includes(n), `${n} found`);
    for (const c of report.catalogues) for (const x of c.codes) assert.ok(x.message.length >= 5, `${x.code} has a message`);
  });

  it('docs/errors.md lists every code and is current (regenerate with npm run docs:errors)', () => {
    const doc = readFileSync(resolve(ROOT, 'docs/errors.md'), 'utf8');
    const missing = report.inSource.filter((code) => !doc.includes(`\`${code}\``));
    assert.deepEqual(missing, [], 'codes missing from docs/errors.md');
    assert.equal(report.stale, false, 'docs/errors.md is stale: run npm run docs:errors');
  });

  it('the wire catalogue keeps its codes, statuses and WireError messages', () => {
    assert.ok(isErrorCatalogue(WIRE_ERRORS));
    const e = new WireError('TWF_E_REPLAY', 'seq 3');
    assert.equal(e.status, 409);
    assert.equal(e.code, 'TWF_E_REPLAY');
    assert.equal(e.detail, 'seq 3');
    assert.equal(e.message, `TWF_E_REPLAY: ${WIRE_ERRORS.TWF_E_REPLAY.message} (seq 3)`);
    assert.equal(new WireError('TWF_E_INTERNAL').message, `TWF_E_INTERNAL: ${WIRE_ERRORS.TWF_E_INTERNAL.message}`);
    assert.equal(WIRE_ERRORS.TWF_E_TOO_LARGE.status, 413);
  });

  it('defineErrors refuses codes outside the TWF_E_ form and errorClass words its messages', () => {
    assert.throws(() => defineErrors({ TWF_E_lower: { message: 'x' } } as never), /not a TWF_E_ code/);
    assert.throws(() => defineErrors({ TWF_E_X: { message: 'x', status: 200 } }), /not an HTTP error status/);
    const C = defineErrors({ TWF_E_EXAMPLE: { message: 'An example.' } });
    class ExampleError extends errorClass('ExampleError', C) {}
    const e = new ExampleError('TWF_E_EXAMPLE', 'here');
    assert.ok(e instanceof Error && e instanceof ExampleError);
    assert.equal(e.name, 'ExampleError');
    assert.equal(e.message, 'TWF_E_EXAMPLE: An example. (here)');
    assert.ok(Object.isFrozen(C) && Object.isFrozen(C.TWF_E_EXAMPLE));
  });
});
