import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CoordinatorLink, proxyFor } from './net.js';

describe('HTTPS_PROXY and NO_PROXY', () => {
  const coord = new URL('https://coord.example.org:7400');
  const p = (env: NodeJS.ProcessEnv, url: URL = coord) => proxyFor(url, env)?.href ?? null;

  it('tunnels an https:// coordinator through HTTPS_PROXY (lower case first), never a plain http:// one', () => {
    assert.equal(p({ HTTPS_PROXY: 'http://proxy.hosp:3128' }), 'http://proxy.hosp:3128/');
    assert.equal(p({ https_proxy: 'proxy.hosp:8080', HTTPS_PROXY: 'http://other:1' }), 'http://proxy.hosp:8080/');
    assert.equal(p({}), null);
    assert.equal(p({ HTTPS_PROXY: 'http://proxy.hosp:3128' }, new URL('http://127.0.0.1:7400')), null);
    assert.equal(p({ HTTP_PROXY: 'http://proxy.hosp:3128' }), null, 'HTTP_PROXY is for http:// targets');
  });

  it('skips the proxy for hosts NO_PROXY lists: *, names, domains, IPs, ports', () => {
    const via = { HTTPS_PROXY: 'http://proxy.hosp:3128' };
    for (const np of ['*', 'coord.example.org', '.example.org', 'example.org', '*.example.org', 'localhost, coord.example.org:7400', 'COORD.EXAMPLE.ORG']) {
      assert.equal(p({ ...via, NO_PROXY: np }), null, np);
    }
    for (const np of ['example.com', 'ample.org', 'coord.example.org:443', 'other.example.org']) {
      assert.equal(p({ ...via, no_proxy: np }), 'http://proxy.hosp:3128/', np);
    }
    const ip = new URL('https://10.1.2.3:7400');
    assert.equal(p({ ...via, NO_PROXY: '10.1.2.3' }, ip), null);
    assert.equal(p({ ...via, NO_PROXY: '2.3' }, ip), 'http://proxy.hosp:3128/', 'no suffix match on IP addresses');
    const v6 = new URL('https://[::1]:7400');
    assert.equal(p({ ...via, NO_PROXY: '::1' }, v6), null);
    assert.equal(p({ ...via, NO_PROXY: '[::1]:7400' }, v6), null);
    assert.equal(p({ ...via, NO_PROXY: '[::1]:9' }, v6), 'http://proxy.hosp:3128/');
  });

  it('refuses a proxy it cannot use, with TWF_E_PROXY', () => {
    assert.throws(() => proxyFor(coord, { HTTPS_PROXY: 'socks5://proxy:1080' }), /TWF_E_PROXY/);
  });
});

describe('CoordinatorLink trust', () => {
  it('pins when it has pins, pins the first key on first use, else uses certificate authorities; plain http has none', () => {
    const pin = `sha256/${'A'.repeat(43)}=`;
    assert.equal(new CoordinatorLink({ coordinatorUrl: 'https://c:1', tlsPins: [pin], env: {} }).trust, 'pins');
    assert.equal(new CoordinatorLink({ coordinatorUrl: 'https://c:1', firstUse: true, env: {} }).trust, 'first-use');
    assert.equal(new CoordinatorLink({ coordinatorUrl: 'https://c:1', env: {} }).trust, 'ca');
    const plain = new CoordinatorLink({ coordinatorUrl: 'http://127.0.0.1:1', tlsPins: [pin], env: { HTTPS_PROXY: 'http://p:1' } });
    assert.equal(plain.trust, 'none');
    assert.equal(plain.proxy, null);
    assert.deepEqual(plain.socketOptions(), {});
  });
});
