import { join } from 'node:path';
import { startCoordinator, lead, tinySpec } from '../harness.js';
import { failed, refused, type Attack } from './types.js';

/** Attacks on how a study is set up (who takes part, how many must contribute). */
export const STUDY_SETUP_ATTACKS: Attack[] = [
  {
    name: 'study-with-one-or-two-contributors',
    finding: 2,
    expected: 'a study with minSites 1 or 2 is refused (4xx TWF_E_TOO_FEW_CONTRIBUTORS naming minSites)',
    async run(ctx) {
      const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'));
      try {
        const codes: string[] = [];
        for (const minSites of [1, 2]) {
          const r = await lead<{ code?: string; detail?: string }>(url, 'POST', '/api/studies', tinySpec({ minSites }));
          if (r.status < 400 || r.status >= 500 || r.json.code !== 'TWF_E_TOO_FEW_CONTRIBUTORS' || !/minSites/.test(r.json.detail ?? '')) {
            return failed(`minSites ${minSites} answered ${r.status} ${JSON.stringify(r.json)}`);
          }
          codes.push(`${minSites} -> ${r.status}`);
        }
        const ok = await lead(url, 'POST', '/api/studies', tinySpec({ minSites: 3 }));
        if (ok.status !== 201) return failed(`the same spec with minSites 3 was not accepted (${ok.status})`);
        return refused(`minSites ${codes.join(', ')}; the same spec with 3 is accepted`, 'TWF_E_TOO_FEW_CONTRIBUTORS');
      } finally {
        await c.close();
      }
    },
  },
];
