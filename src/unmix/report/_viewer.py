"""The script and style sheet of the report's interactive viewer (private).

Hand-written JavaScript (ES5, about 12 KB, no library, no network) and canvas. It reads
the JSON payload of ``<script id="unmix-viewer-data">`` built by
:mod:`unmix.report._interactive` and draws, for every method, one canvas a component map
(a checkbox beside its name toggles the component's curve), a spectrum panel (data, model,
mean or offset, contributions; linear or log scale) and a residual panel on the calibrated
signal axis, or data / model / residual images for 2-D patterns. Hovering a map previews a
pixel, a click pins it; a crosshair marks it on every map. A tree payload adds a list of
nodes: clicking one shows its map and endmember.

For tests and scripts the values on show are ``window.unmixViewer.state()`` (also written as
JSON into ``<pre id="unmix-viewer-state">``); ``unmixViewer.select(row, col)`` and
``unmixViewer.node(id)`` act as a click.
"""

from __future__ import annotations

__all__ = ["VIEWER_CSS", "VIEWER_JS"]

VIEWER_CSS = """
#unmix-viewer .uv-bar{display:flex;gap:18px;align-items:center;margin:6px 0 10px}
#unmix-viewer .uv-maps{display:flex;flex-wrap:wrap;gap:8px 14px;align-items:flex-start}
#unmix-viewer .uv-cap{font-size:.85em;margin-bottom:2px}
#unmix-viewer canvas{display:block;max-width:100%;border:1px solid #d9dee7}
#unmix-viewer .uv-map canvas{cursor:crosshair;image-rendering:pixelated}
#unmix-viewer .uv-pats{display:flex;flex-wrap:wrap;gap:8px}
#unmix-viewer .uv-pats canvas{image-rendering:pixelated;width:140px;height:140px}
#unmix-viewer .uv-nodes button{display:block;margin:2px 0;font:inherit;cursor:pointer}
#unmix-viewer .uv-nodes button.on{background:#2a5d9f;color:#fff}
#unmix-viewer .uv-tree{display:flex;flex-wrap:wrap;gap:12px 28px}
"""

VIEWER_JS = r"""
(function () {
"use strict";
var P = JSON.parse(document.getElementById("unmix-viewer-data").textContent);
var root = document.getElementById("unmix-viewer"), G = P.grid, N = P.axis.n;
var TAB = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
var VIR = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
var DIV = [[33, 102, 172], [247, 247, 247], [178, 24, 43]];
var V = {sel: null, pin: null, log: false, node: null, last: null}, maps = [];
function f32(s) {
  if (!s) return null;
  var b = atob(s), u = new Uint8Array(b.length);
  for (var i = 0; i < b.length; i++) u[i] = b.charCodeAt(i);
  return new Float32Array(u.buffer);
}
function el(tag, cls, text, parent) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function canvas(parent, w, h, cls) {
  var c = el("canvas", cls, null, parent);
  c.width = w; c.height = h;
  return c;
}
function cmap(st, t) {
  t = Math.max(0, Math.min(1, isFinite(t) ? t : 0)) * (st.length - 1);
  var i = Math.min(Math.floor(t), st.length - 2), f = t - i, a = st[i], b = st[i + 1];
  return [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])];
}
function range(v) {
  var lo = Infinity, hi = -Infinity;
  for (var i = 0; i < v.length; i++) {
    if (isFinite(v[i])) { lo = Math.min(lo, v[i]); hi = Math.max(hi, v[i]); }
  }
  return hi >= lo ? [lo, hi] : [0, 1];
}
function tr(y) { return V.log ? (y > 0 ? Math.log(y) / Math.LN10 : NaN) : y; }
function image(v, h, w, log, r) {
  var c = el("canvas"), g, im, s, div;
  c.width = w; c.height = h; g = c.getContext("2d"); im = g.createImageData(w, h);
  v = log ? Array.prototype.map.call(v, tr) : v;
  r = r || range(v); div = !log && r[0] < 0;
  s = div ? Math.max(-r[0], r[1]) || 1 : (r[1] - r[0]) || 1;
  for (var i = 0; i < h * w; i++) {
    var x = v[i], col = !isFinite(x) ? [200, 200, 200]
      : div ? cmap(DIV, 0.5 + x / (2 * s)) : cmap(VIR, (x - r[0]) / s);
    for (var q = 0; q < 3; q++) im.data[4 * i + q] = col[q];
    im.data[4 * i + 3] = 255;
  }
  g.putImageData(im, 0, 0);
  return c;
}
function mapView(parent, v, title) {
  var box = el("div", "uv-map", null, parent), cap = el("div", "uv-cap", title, box);
  var c = canvas(box, G.w * G.zx, G.h * G.zy);
  var m = {c: c, src: image(v, G.h, G.w, false), cap: cap};
  function at(e) {
    var r = c.getBoundingClientRect();
    return [Math.min(G.h - 1, Math.floor((e.clientY - r.top) / r.height * G.h)),
            Math.min(G.w - 1, Math.floor((e.clientX - r.left) / r.width * G.w))];
  }
  c.addEventListener("mousemove", function (e) { show(at(e), false); });
  c.addEventListener("mouseleave", function () { if (V.pin) show(V.pin, false); });
  c.addEventListener("click", function (e) { show(at(e), true); });
  maps.push(m);
  return m;
}
function drawMaps() {
  maps.forEach(function (m) {
    var g = m.c.getContext("2d"), s = V.sel;
    g.imageSmoothingEnabled = false;
    g.drawImage(m.src, 0, 0, m.c.width, m.c.height);
    if (!s) return;
    var y = (s[0] + 0.5) * G.zy, x = (s[1] + 0.5) * G.zx;
    g.strokeStyle = "rgba(255,255,255,0.8)"; g.lineWidth = 1; g.beginPath();
    g.moveTo(0, y); g.lineTo(m.c.width, y); g.moveTo(x, 0); g.lineTo(x, m.c.height); g.stroke();
    g.strokeStyle = "#e00"; g.strokeRect(x - G.zx / 2 - 1, y - G.zy / 2 - 1, G.zx + 2, G.zy + 2);
  });
}
function ticks(lo, hi, n) {
  var step = Math.pow(10, Math.floor(Math.log(((hi - lo) / n) || 1) / Math.LN10));
  var r = (hi - lo) / step / n, t = [];
  step *= r > 5 ? 10 : r > 2 ? 5 : r > 1 ? 2 : 1;
  for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push(v);
  return t;
}
function fmt(v) {
  var a = Math.abs(v);
  return a >= 1e5 || (a < 1e-3 && v !== 0) ? v.toExponential(1) : String(+v.toPrecision(4));
}
function plot(cv, xs, series, xlabel) {
  var g = cv.getContext("2d"), W = cv.width, H = cv.height, L = 64, R = 12, T = 10, B = 34;
  var lo = Infinity, hi = -Infinity, xr = range(xs), legend = 0;
  series.forEach(function (s) {
    s.y.forEach(function (y) {
      y = tr(y);
      if (isFinite(y)) { lo = Math.min(lo, y); hi = Math.max(hi, y); }
    });
  });
  if (!(hi > lo)) { lo = (isFinite(lo) ? lo : 0) - 1; hi = lo + 2; }
  if (!(xr[1] > xr[0])) xr[1] = xr[0] + 1;
  function sx(x) { return L + (x - xr[0]) / (xr[1] - xr[0]) * (W - L - R); }
  function sy(y) { return H - B - (y - lo) / (hi - lo) * (H - T - B); }
  g.clearRect(0, 0, W, H); g.font = "11px sans-serif"; g.fillStyle = "#333"; g.setLineDash([]);
  g.strokeStyle = "#999"; g.strokeRect(L, T, W - L - R, H - T - B);
  g.textAlign = "center";
  ticks(xr[0], xr[1], 7).forEach(function (x) { g.fillText(fmt(x), sx(x), H - B + 13); });
  g.fillText(xlabel, (L + W - R) / 2, H - 4);
  g.textAlign = "right";
  ticks(lo, hi, 4).forEach(function (y) {
    g.fillText(V.log ? "1e" + fmt(y) : fmt(y), L - 4, sy(y) + 4);
  });
  series.forEach(function (s) {
    var up = false;
    g.strokeStyle = s.color; g.lineWidth = s.width || 1.2; g.setLineDash(s.dash || []);
    g.beginPath();
    s.y.forEach(function (y, i) {
      y = tr(y);
      if (!isFinite(y)) { up = false; return; }
      if (up) g.lineTo(sx(xs[i]), sy(y)); else g.moveTo(sx(xs[i]), sy(y));
      up = true;
    });
    g.stroke();
    if (s.label) { g.fillStyle = s.color; g.fillText(s.label, W - R - 4, T + 12 + 12 * legend++); }
  });
  g.setLineDash([]);
}
function values(m, p) {
  var k = m.d.k, c, j, out = {model: [], parts: [], data: null, residual: null, base: null};
  if (m.model) { for (c = 0; c < N; c++) out.model.push(m.model[p * N + c]); }
  else {
    for (c = 0; c < N; c++) out.model.push(m.base ? m.base[c] : 0);
    for (j = 0; j < k; j++) {
      var a = m.A[p * k + j], part = [];
      for (c = 0; c < N; c++) { part.push(a * m.S[j * N + c]); out.model[c] += part[c]; }
      out.parts.push(part);
    }
    if (m.base) out.base = slice(m.base);
  }
  if (X) {
    out.data = slice(X.subarray(p * N, p * N + N));
    out.residual = out.data.map(function (x, c) { return x - out.model[c]; });
  }
  return out;
}
function patterns(box, list) {
  var sh = P.axis.shape, both = [];
  box.textContent = "";
  list.slice(0, 2).forEach(function (it) { if (it[0] !== "residual") both = both.concat(it[1]); });
  both = range(V.log ? both.map(tr) : both);  // data and model on one colour scale
  list.forEach(function (it, i) {
    var d = el("div", null, null, box), log = V.log && it[0] !== "residual";
    el("div", "uv-cap", it[0], d).style.color = it[2] || "";
    d.appendChild(image(it[1], sh[0], sh[1], log, i < 2 && it[0] !== "residual" ? both : null));
  });
}
function draw(m, v) {
  var list = [], xs = P.axis.values;
  if (v.data) list.push(["data", v.data, "#222"]);
  list.push(["model", v.model, "#d62728"]);
  if (v.base) list.push([m.d.mean ? "mean" : "offset", v.base, "#777"]);
  v.parts.forEach(function (y, j) { if (m.on[j]) list.push([m.d.names[j], y, TAB[j % 10]]); });
  if (P.axis.kind !== 1) {
    if (v.residual) list.splice(2, 0, ["residual", v.residual, ""]);
    return patterns(m.pats, list);
  }
  plot(m.plot, xs, list.map(function (it, i) {
    var dash = it[0] === "mean" || it[0] === "offset" ? [4, 3] : null;
    return {y: it[1], color: it[2], label: it[0], width: i < 2 ? 1.6 : 1, dash: dash};
  }), P.axis.label);
  if (v.residual) {
    var lg = V.log; V.log = false;
    var zero = xs.map(function () { return 0; });
    plot(m.rplot, xs, [{y: v.residual, color: "#555", label: "residual"},
      {y: zero, color: "#bbb"}], P.axis.label);
    V.log = lg;
  }
}
function where(s) {
  var t = "row " + s[0] + ", col " + s[1];
  G.axes.forEach(function (a, i) {
    if (a) t += "; " + a.name + " = " + fmt(a.values[s[i]]) + (a.units ? " " + a.units : "");
  });
  return t;
}
function render() {
  drawMaps();
  if (!V.sel) return;
  var p = V.sel[0] * G.w + V.sel[1];
  var pinned = !!V.pin && V.pin[0] === V.sel[0] && V.pin[1] === V.sel[1];
  var st = {pixel: V.sel.slice(), index: p, pinned: pinned, position: where(V.sel),
    bins: P.bins, methods: [], node: V.node};
  M.forEach(function (m) {
    var v = values(m, p);
    draw(m, v);
    st.methods.push({name: m.d.name, data: v.data, model: v.model, residual: v.residual,
      contributions: v.parts, base: v.base, shown: m.on.slice()});
  });
  pos.textContent = "Pixel " + st.position + (st.pinned ? " (pinned)" : "");
  V.last = st;
  document.getElementById("unmix-viewer-state").textContent = JSON.stringify(st);
}
function show(s, pin) { if (!s) return; V.sel = s; if (pin) V.pin = s; render(); }
var bar = el("div", "uv-bar", null, root), lab = el("label", null, null, bar);
var logbox = el("input", null, null, lab);
logbox.type = "checkbox"; logbox.id = "uv-log";
lab.appendChild(document.createTextNode(" log scale"));
logbox.addEventListener("change", function () {
  V.log = this.checked;
  render();
  if (V.node) T.pick(V.node.id);
});
var pos = el("span", "muted", "Point at a map.", bar), X = f32(P.data), T = null;
if (P.tree) T = tree(P.tree);
var M = P.methods.map(function (d, mi) {
  var m = {d: d, A: f32(d.A), S: f32(d.S), base: f32(d.base), model: f32(d.model), on: []};
  var sec = el("div", "uv-method", null, root), row;
  el("h3", null, d.name, sec);
  if (d.note) el("p", "muted", d.note, sec);
  row = el("div", "uv-maps", null, sec);
  for (var j = 0; j < d.k; j++) {
    var col = new Float32Array(G.h * G.w), mv, lb, cb;
    for (var q = 0; q < col.length; q++) col[q] = m.A[q * d.k + j];
    mv = mapView(row, col, null);
    lb = el("label", null, null, mv.cap);
    cb = el("input", null, null, lb);
    cb.type = "checkbox"; cb.checked = true;
    cb.setAttribute("data-method", mi); cb.setAttribute("data-component", j);
    lb.style.color = TAB[j % 10];
    lb.appendChild(document.createTextNode(" " + d.names[j]));
    cb.addEventListener("change", toggle(m, j));
    m.on.push(true);
  }
  if (P.axis.kind === 1) {
    m.plot = canvas(sec, 760, 300, "uv-plot");
    m.rplot = canvas(sec, 760, 120, "uv-plot");
  } else m.pats = el("div", "uv-pats", null, sec);
  return m;
});
function toggle(m, j) { return function () { m.on[j] = this.checked; render(); }; }
function slice(a) { return Array.prototype.slice.call(a); }
function tree(t) {
  var box = el("div", "uv-tree", null, root), list = el("div", "uv-nodes", null, box);
  var right = el("div", null, null, box), view = el("div", "uv-maps", null, right);
  var nmap = mapView(view, new Float32Array(G.h * G.w), "node map"), buttons = {};
  var spec = P.axis.kind === 1 ? canvas(right, 560, 220) : el("div", "uv-pats", null, right);
  el("h3", null, "Tree nodes: click one", list);
  t.nodes.forEach(function (nd) {
    var b = el("button", null, nd.label, list);
    b.style.marginLeft = 14 * nd.depth + "px";
    b.setAttribute("data-node", nd.id);
    buttons[nd.id] = b;
    b.addEventListener("click", function () { pick(nd.id); });
  });
  function pick(id) {
    var nd = t.nodes.filter(function (x) { return x.id === id; })[0];
    var a = f32(nd.map), s = f32(nd.S), out = document.getElementById("unmix-viewer-state");
    for (var key in buttons) buttons[key].className = +key === id ? "on" : "";
    nmap.src = image(a, G.h, G.w, false); nmap.cap.textContent = "map of " + nd.label;
    if (P.axis.kind === 1) {
      plot(spec, P.axis.values, [{y: slice(s), color: "#2a5d9f",
        label: "endmember of " + nd.label}], P.axis.label);
    } else patterns(spec, [["endmember of " + nd.label, s, ""]]);
    V.node = {id: id, label: nd.label, map: slice(a), endmember: slice(s)};
    drawMaps();
    if (V.last) V.last.node = V.node;
    out.textContent = JSON.stringify(V.last || {node: V.node});
    return V.node;
  }
  return {pick: pick, first: t.nodes.length ? t.nodes[0].id : null};
}
if (T && T.first != null) T.pick(T.first);
drawMaps();
window.unmixViewer = {
  state: function () { return V.last || {node: V.node}; },
  select: function (r, c) { show([r, c], true); return V.last; },
  node: function (id) { return T ? T.pick(id) : null; }
};
})();
"""
