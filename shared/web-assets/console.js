// Twinfed consoles: behaviour for server-rendered pages, driven by data attributes (no inline
// script: the Content-Security-Policy forbids it).
//   data-live="/url/of/fragment" data-events="/url/of/sse"  re-fetch the fragment on every pushed event
//   data-chart="/url/of/json"                                 a uPlot chart: {x: [...], series: [{label, values, points?, dash?, bandWith?}], xLabel, yLabel, yLog?}
//   data-confirm="text"  on a form                            ask before submitting
//   data-copy="#id"      on a button                          copy an element's text
'use strict';
(function () {
  function charts(root) {
    root.querySelectorAll('[data-chart]').forEach(function (el) {
      drawChart(el);
    });
  }
  function drawChart(el) {
    if (typeof uPlot === 'undefined') return;
    fetch(el.getAttribute('data-chart'), { credentials: 'same-origin' })
      .then(function (r) {
        return r.ok ? r.json() : null;
      })
      .then(function (d) {
        if (!d || !d.x) return;
        el.textContent = '';
        var palette = ['#1f5fa8', '#c0392b', '#2e8b57', '#8e44ad', '#d35400', '#16a085', '#7f8c8d'];
        var series = [{ label: d.xLabel || 'x' }];
        var data = [d.x];
        d.series.forEach(function (s, i) {
          var c = s.color || palette[i % palette.length];
          series.push({ label: s.label, stroke: c, width: s.points ? 0 : 2, dash: s.dash ? [6, 4] : undefined, points: { show: !!s.points, size: 7, fill: c }, spanGaps: true });
          // A log axis cannot show values <= 0: they are left out rather than drawn at the bottom.
          data.push(
            d.yLog
              ? s.values.map(function (v) {
                  return v !== null && v > 0 ? v : null;
                })
              : s.values,
          );
        });
        var bands = [];
        d.series.forEach(function (s, i) {
          if (s.bandWith !== undefined) bands.push({ series: [i + 1, s.bandWith + 1], fill: 'rgba(31,95,168,0.12)' });
        });
        var width = Math.max(320, Math.min(el.clientWidth || 720, 960));
        var scales = { x: { time: false } };
        if (d.yLog) scales.y = { distr: 3, log: 10 };
        // The y axis is sized for its tick labels (up to 8 characters) plus its title, so they do not overlap.
        var opts = { width: width, height: d.height || 300, series: series, bands: bands, axes: [{ label: d.xLabel }, { label: d.yLabel, size: 90 }], scales: scales };
        el.plot = new uPlot(opts, data, el);
        el.setAttribute('data-drawn', String(d.x.length));
      })
      .catch(function () {});
  }
  function live(el) {
    var src = el.getAttribute('data-live');
    var events = el.getAttribute('data-events');
    if (!src || !events || typeof EventSource === 'undefined') return;
    var busy = false;
    var again = false;
    function refresh() {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      fetch(src, { credentials: 'same-origin' })
        .then(function (r) {
          return r.ok ? r.text() : null;
        })
        .then(function (t) {
          if (t !== null) {
            el.innerHTML = t;
            charts(el);
            el.setAttribute('data-updated', String(Date.now()));
          }
        })
        .catch(function () {})
        .then(function () {
          busy = false;
          if (again) {
            again = false;
            refresh();
          }
        });
    }
    var es = new EventSource(events);
    es.onmessage = refresh;
    ['changed', 'round', 'site', 'study', 'audit'].forEach(function (name) {
      es.addEventListener(name, refresh);
    });
    es.onopen = function () {
      el.setAttribute('data-connected', 'true');
    };
    es.onerror = function () {
      el.setAttribute('data-connected', 'false');
    };
  }
  document.addEventListener('DOMContentLoaded', function () {
    charts(document);
    document.querySelectorAll('[data-live]').forEach(live);
    document.addEventListener('submit', function (e) {
      var f = e.target;
      var q = f.getAttribute && f.getAttribute('data-confirm');
      if (q && !window.confirm(q)) e.preventDefault();
    });
    document.addEventListener('click', function (e) {
      var b = e.target.closest && e.target.closest('[data-copy]');
      if (!b) return;
      var t = document.querySelector(b.getAttribute('data-copy'));
      if (t && navigator.clipboard) navigator.clipboard.writeText(t.textContent.trim());
    });
  });
})();
