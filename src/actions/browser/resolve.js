// clerk's page-side element resolver: finds the element a locator names and
// performs the step's operation on it, in ONE WebDriver round trip.
//
// This file installs `window.__clerkResolve(loc, op)` (clerk also asks
// Chromium to install it in every new document, so most calls send only a
// one-line script):
// loc: { kind, value, nth, within, right_of, near }
// op:  { op, need, errorPatterns, ... }
// Returns { ok: true, ... } or { ok: false, reason, message, count, shown,
// url, title, errors } where errors are the page's visible error messages.
//
// Every document also gets a random token (`__clerkDoc`) and a flag set when
// it starts to unload (`__clerkLeaving`): after a click, clerk compares them
// to know whether a navigation started and when the new document arrived.
(function () {
if (!Object.prototype.hasOwnProperty.call(window, '__clerkDoc')) {
  Object.defineProperty(window, '__clerkDoc', { configurable: true,
    value: Math.random().toString(36).slice(2) + Date.now().toString(36) });
  window.addEventListener('beforeunload', function () { window.__clerkLeaving = true; }, true);
}
})();
Object.defineProperty(window, '__clerkResolve', { configurable: true, writable: true, value: function (loc, op) {
// The document being searched: the current one, or a frame's during the
// frame search.
var D = document;
function norm(s) {
  return String(s == null ? '' : s).replace(/[\s\u00a0]+/g, ' ').trim();
}
function normLabel(s) {
  return norm(s).replace(/\s*[:*]+$/, '').trim();
}
// Case-, colon- and whitespace-insensitive form of a label.
function loose(s) {
  return normLabel(String(s == null ? '' : s).replace(/[:*]/g, ' ')).toLowerCase().replace(/\s+/g, ' ').trim();
}
function shown(el) {
  if (!el || !el.isConnected) return false;
  if (el.tagName === 'INPUT' && String(el.type).toLowerCase() === 'hidden') return false;
  if (el.tagName === 'OPTION') {
    var s = el.closest('select');
    return s ? shown(s) : false;
  }
  if (typeof el.checkVisibility === 'function' &&
      !el.checkVisibility({ visibilityProperty: true, checkVisibilityCSS: true })) {
    return false;
  }
  return el.getClientRects().length > 0;
}
function enabled(el) {
  if (el.matches && el.matches(':disabled')) return false;
  return String(el.getAttribute && el.getAttribute('aria-disabled')) !== 'true';
}
var CONTROL_TAGS = /^(INPUT|SELECT|TEXTAREA|BUTTON|SCRIPT|STYLE)$/;
// Text of a label without the text of the controls it wraps (a nested
// <select> would otherwise add its options to the label).
function labelText(node) {
  var out = '';
  node.childNodes.forEach(function (c) {
    if (c.nodeType === 3) {
      out += c.nodeValue;
    } else if (c.nodeType === 1 && !CONTROL_TAGS.test(c.tagName)) {
      out += ' ' + labelText(c) + ' ';
    }
  });
  return out;
}
function uniq(list) {
  var out = [];
  list.forEach(function (e) { if (e && out.indexOf(e) < 0) out.push(e); });
  return out;
}
function all(scope, sel) {
  return Array.prototype.slice.call(scope.querySelectorAll(sel));
}

// ------------------------------------------------------------ labels
// The rules, in the order they are tried (docs/browser.md lists them).
var RULES = ['label', 'aria-labelledby', 'aria-label', 'text-before', 'text-after', 'table-cell',
  'placeholder', 'title'];
var FIELDS = 'input:not([type=hidden]), select, textarea, [contenteditable=""], [contenteditable=true], ' +
  '[role=textbox], [role=combobox], [role=checkbox], [role=radio], [role=switch], [role=listbox], ' +
  '[role=searchbox], [role=spinbutton]';
var LABELLED = FIELDS + ', button, [aria-label], [aria-labelledby]';
var INLINE_CAPTION = /^(LABEL|B|STRONG|SPAN|FONT|I|EM|SMALL|U)$/;
var FIELD_ROLES = /^(textbox|combobox|checkbox|radio|switch|listbox|searchbox|spinbutton)$/;
// The same as el.matches(FIELDS), without matching a selector list per call.
function isField(el) {
  var t = el.tagName;
  if (t === 'INPUT') return String(el.type).toLowerCase() !== 'hidden';
  if (t === 'SELECT' || t === 'TEXTAREA') return true;
  var ce = el.getAttribute('contenteditable');
  if (ce === '' || ce === 'true') return true;
  var role = el.getAttribute('role');
  return !!role && FIELD_ROLES.test(role);
}
function isToggle(el) {
  var t = String(el.type).toLowerCase();
  return el.tagName === 'INPUT' && (t === 'checkbox' || t === 'radio');
}
// Whether an element holds a form field (a walk over its few children:
// cheaper than querySelector when done for every field of a big form).
var FIELD_TAGS = /^(INPUT|SELECT|TEXTAREA|BUTTON)$/;
function holdsField(n) {
  for (var c = n.firstElementChild; c; c = c.nextElementSibling) {
    if ((FIELD_TAGS.test(c.tagName) && !(c.tagName === 'INPUT' && String(c.type).toLowerCase() === 'hidden')) ||
        holdsField(c)) return true;
  }
  return false;
}
function holdsControl(node) {
  return node.nodeType === 1 && (CONTROL_TAGS.test(node.tagName) && !/^(SCRIPT|STYLE)$/.test(node.tagName) ||
    !!node.querySelector('input:not([type=hidden]), select, textarea, button'));
}
// The text a sibling node gives as a caption ('' if it is not one).
function siblingCaption(n) {
  if (!n) return '';
  if (n.nodeType === 3) return norm(n.nodeValue);
  if (n.nodeType !== 1 || !INLINE_CAPTION.test(n.tagName) || holdsControl(n)) return '';
  if (n.tagName === 'LABEL' && n.control && n.control !== null) return '';
  return norm(labelText(n));
}
function skipBlank(n, dir) {
  while (n && ((n.nodeType === 3 && !norm(n.nodeValue)) || n.nodeType === 8 ||
               (n.nodeType === 1 && n.tagName === 'BR'))) {
    n = n[dir];
  }
  return n;
}
function cellText(c) {
  if (!c || holdsControl(c)) return '';
  return norm(labelText(c));
}
// Column of a cell, counting colspans.
function columnOf(cell) {
  var col = 0;
  for (var c = cell.previousElementSibling; c; c = c.previousElementSibling) col += c.colSpan || 1;
  return col;
}
function cellAt(row, col) {
  var at = 0;
  for (var c = row.firstElementChild; c; c = c.nextElementSibling) {
    if (!/^(TD|TH)$/.test(c.tagName)) continue;
    if (col >= at && col < at + (c.colSpan || 1)) return c;
    at += c.colSpan || 1;
  }
  return null;
}
// Label texts per control, built once per document and call: `el.labels`
// walks the whole document on every access, which is quadratic on a big form.
var labelsFor = null, labelsDoc = null;
function labelTexts(el) {
  var doc = el.ownerDocument;
  if (labelsDoc !== doc) {
    labelsDoc = doc;
    labelsFor = new Map();
    all(doc, 'label').forEach(function (l) {
      var c = l.control;
      if (!c) return;
      var t = norm(labelText(l));
      if (!t) return;
      if (!labelsFor.has(c)) labelsFor.set(c, []);
      labelsFor.get(c).push(t);
    });
  }
  return labelsFor.get(el) || [];
}
// The caption of the table cell left of the field's cell (empty cells
// skipped), else of the cell above in its column. Only the first field of a
// cell takes it, and a cell holding a field is no caption.
function cellOf(el) {
  var c = el.parentElement;
  while (c && c.tagName !== 'TD' && c.tagName !== 'TH') c = c.parentElement;
  return c;
}
function cellCaption(el) {
  if (!isField(el) || String(el.type).toLowerCase() === 'radio') return [];
  var cell = cellOf(el);
  if (!cell || !cell.parentElement) return [];
  var first = cell.querySelector('input:not([type=hidden]), select, textarea');
  if (first && first !== el) return [];
  var left = cell.previousElementSibling;
  while (left && !cellText(left) && !holdsControl(left)) left = left.previousElementSibling;
  var lt = cellText(left);
  if (lt) return [lt];
  var prev = cell.parentElement.previousElementSibling;
  if (prev) {
    var at = cellText(cellAt(prev, columnOf(cell)));
    if (at) return [at];
  }
  return [];
}
// What cellCaption may give (a superset, without the querySelector calls
// that make it slow on a 2,000-field form); a match is then confirmed with
// cellCaption.
function cellCaptionFast(el) {
  if (!isField(el) || String(el.type).toLowerCase() === 'radio') return [];
  var cell = cellOf(el);
  if (!cell || !cell.parentElement) return [];
  var out = [];
  var left = cell.previousElementSibling;
  while (left && !norm(left.textContent)) left = left.previousElementSibling;
  if (left) out.push(norm(left.textContent));
  // The cell above counts only when the left one is missing or holds a field.
  var leftHolds = left && holdsField(left);
  var prev = (!left || leftHolds) && cell.parentElement.previousElementSibling;
  if (prev) {
    var above = cellAt(prev, columnOf(cell));
    if (above && norm(above.textContent)) out.push(norm(above.textContent));
  }
  return out;
}
function caption(el, rule, strict) {
  switch (rule) {
    case 'label':
      return labelTexts(el);
    case 'aria-labelledby': {
      var ids = el.getAttribute('aria-labelledby');
      if (!ids) return [];
      var t = String(ids).split(/\s+/).map(function (id) {
        var l = D.getElementById(id);
        return l ? l.textContent : '';
      }).join(' ');
      return norm(t) ? [norm(t)] : [];
    }
    case 'aria-label': {
      var a = el.getAttribute('aria-label');
      return a && norm(a) ? [norm(a)] : [];
    }
    case 'text-before': {
      if (!isField(el) || isToggle(el)) return [];
      var t2 = siblingCaption(skipBlank(el.previousSibling, 'previousSibling'));
      return t2 ? [t2] : [];
    }
    case 'text-after': {
      if (!isToggle(el)) return [];
      var t3 = siblingCaption(skipBlank(el.nextSibling, 'nextSibling'));
      return t3 ? [t3] : [];
    }
    case 'table-cell':
      return strict ? cellCaption(el) : cellCaptionFast(el);
    case 'placeholder': {
      var p = el.getAttribute('placeholder');
      return p && norm(p) ? [norm(p)] : [];
    }
    case 'title': {
      var ti = el.getAttribute('title');
      return ti && norm(ti) ? [norm(ti)] : [];
    }
  }
  return [];
}
// Controls whose caption matches, by the first rule that gives any match;
// exact (trailing ':' and '*' ignored) before case/colon/space-insensitive.
// Every caption of every field of a document, by exact and by loose text,
// built once and kept until the document changes (a MutationObserver marks
// it stale): a form of 2,000 fields is read once, not on every lookup.
function labelIndex(doc) {
  var idx = doc.__clerkLabelIndex;
  if (idx && !idx.stale) return idx;
  idx = { stale: false, exact: new Map(), loose: new Map() };
  if (!doc.__clerkLabelObserver && typeof MutationObserver === 'function') {
    var mo = new MutationObserver(function () {
      if (doc.__clerkLabelIndex) doc.__clerkLabelIndex.stale = true;
    });
    mo.observe(doc, { subtree: true, childList: true, characterData: true, attributes: true });
    doc.__clerkLabelObserver = mo;
  }
  labelsDoc = null;
  function add(map, key, entry) {
    var list = map.get(key);
    if (!list) map.set(key, list = []);
    list.push(entry);
  }
  all(doc, LABELLED).forEach(function (el) {
    for (var r = 0; r < RULES.length; r++) {
      caption(el, RULES[r]).forEach(function (c) {
        var entry = { el: el, rule: r, caption: c };
        add(idx.exact, normLabel(c), entry);
        add(idx.loose, loose(c), entry);
      });
    }
  });
  doc.__clerkLabelIndex = idx;
  return idx;
}
// Controls whose caption matches, by the first rule that gives any match;
// exact (trailing ':' and '*' ignored) before case/colon/space-insensitive.
function byLabel(scope, want) {
  var doc = scope.nodeType === 9 ? scope : scope.ownerDocument;
  var idx = labelIndex(doc);
  var exact = normLabel(want), lw = loose(want);
  for (var pass = 0; pass < 2; pass++) {
    var matches = pass === 0 ?
      function (c) { return normLabel(c) === exact; } :
      function (c) { return loose(c) === lw; };
    var entries = (pass === 0 ? idx.exact.get(exact) : idx.loose.get(lw)) || [];
    entries = entries.filter(function (e) {
      return e.el.isConnected && (scope === doc || scope.contains(e.el));
    });
    for (var r = 0; r < RULES.length && entries.length; r++) {
      var hits = [];
      entries.forEach(function (e) {
        if (e.rule !== r || hits.indexOf(e.el) >= 0) return;
        var c = e.caption;
        if (RULES[r] === 'table-cell') {
          c = cellCaption(e.el).filter(matches)[0];
          if (c == null) return;
        }
        hits.push(e.el);
        e.el.__clerkRule = RULES[r];
        e.el.__clerkCaption = c;
      });
      if (hits.length) return hits;
    }
  }
  return [];
}
// The captions of the visible form controls (for "the page has ..." hints).
function pageCaptions(scope) {
  var out = [];
  all(scope, FIELDS).forEach(function (el) {
    if (!shown(el)) return;
    for (var r = 0; r < RULES.length; r++) {
      var cs = caption(el, RULES[r], true);
      if (cs.length) {
        var c = normLabel(cs[0]);
        if (c && out.indexOf(c) < 0) out.push(c);
        return;
      }
    }
  });
  return out;
}
function distance(a, b) {
  var m = a.length, n = b.length, d = [], i, j;
  for (i = 0; i <= m; i++) d[i] = [i];
  for (j = 0; j <= n; j++) d[0][j] = j;
  for (i = 1; i <= m; i++) {
    for (j = 1; j <= n; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1,
        d[i - 1][j - 1] + (a.charAt(i - 1) === b.charAt(j - 1) ? 0 : 1));
    }
  }
  return d[m][n];
}
function didYouMean(want, captions) {
  var w = loose(want), best = null, bestD = 1e9;
  captions.forEach(function (c) {
    var l = loose(c);
    var dd = distance(w, l);
    if (l.indexOf(w) >= 0 || w.indexOf(l) >= 0) dd = Math.min(dd, Math.abs(l.length - w.length));
    if (dd < bestD) { bestD = dd; best = c; }
  });
  return best !== null && bestD <= Math.max(2, Math.floor(w.length / 3)) ? best : null;
}

// ------------------------------------------------------------ text
var CLICKABLE = 'button, a, input[type=submit], input[type=button], input[type=reset], ' +
  'input[type=image], [role=button], [role=link], [role=tab], [role=menuitem], summary';
function ownTextMatches(scope, want, cmp) {
  var found = [];
  all(scope, scope.nodeType === 9 ? 'body, body *' : '*').forEach(function (e) {
    if (/^(SCRIPT|STYLE|NOSCRIPT|TEMPLATE|HEAD|TITLE|OPTION|SELECT)$/.test(e.tagName)) return;
    if (!cmp(labelText(e))) return;
    for (var i = 0; i < e.children.length; i++) {
      if (cmp(labelText(e.children[i]))) return;
    }
    found.push(e);
  });
  return found;
}
function byText(scope, want) {
  var hits = all(scope, CLICKABLE).filter(function (e) {
    var t = e.tagName === 'INPUT' ? (e.value || e.getAttribute('alt') || '') : e.textContent;
    return norm(t) === want;
  });
  if (hits.length) return hits;
  // Any element whose own text is exactly `want`, deepest first.
  var own = ownTextMatches(scope, want, function (t) { return norm(t) === want; });
  if (own.length) return own;
  // A radio button or checkbox captioned by bare text after it (a text
  // node is no element to click).
  return all(scope, 'input[type=radio], input[type=checkbox]').filter(function (e) {
    return caption(e, 'text-after').some(function (t) { return normLabel(t) === normLabel(want); });
  });
}

// ------------------------------------------------------------ anchors
// The rectangle of an element's own text (not of the controls it holds).
function textRect(e) {
  var r = null;
  e.childNodes.forEach(function (c) {
    if (c.nodeType !== 3 || !norm(c.nodeValue)) return;
    var range = D.createRange();
    range.selectNodeContents(c);
    var b = range.getBoundingClientRect();
    if (!b.width && !b.height) return;
    r = r ? { left: Math.min(r.left, b.left), top: Math.min(r.top, b.top),
              right: Math.max(r.right, b.right), bottom: Math.max(r.bottom, b.bottom) } :
      { left: b.left, top: b.top, right: b.right, bottom: b.bottom };
  });
  if (r) return r;
  var b2 = e.getBoundingClientRect();
  return { left: b2.left, top: b2.top, right: b2.right, bottom: b2.bottom };
}
function anchorsFor(scope, text) {
  var exact = normLabel(text), lw = loose(text);
  var hits = ownTextMatches(scope, exact, function (t) { return normLabel(t) === exact; }).filter(shown);
  if (!hits.length) hits = ownTextMatches(scope, lw, function (t) { return loose(t) === lw; }).filter(shown);
  return hits;
}
// Keeps the candidate nearest to the anchor text (right of it on the same
// line, or nearest in any direction).
function byAnchor(scope, list, l) {
  var text = l.right_of != null ? l.right_of : l.near;
  var anchors = anchorsFor(scope, text);
  var how = l.right_of != null ? 'right_of' : 'near';
  if (!anchors.length) {
    return { none: "no text '" + text + "' for " + how + ' on the page' };
  }
  if (anchors.length > 1) {
    return { many: anchors.length + " texts '" + text + "' for " + how + ' (' +
      anchors.slice(0, 5).map(describeEl).join(', ') + '); add within' };
  }
  var a = textRect(anchors[0]);
  var best = null, bestD = 1e9;
  list.filter(shown).forEach(function (e) {
    if (e === anchors[0] || e.contains(anchors[0])) return;
    var b = e.getBoundingClientRect(), d;
    if (how === 'right_of') {
      var sameLine = b.top < a.bottom && b.bottom > a.top;
      if (!sameLine || b.left < a.right - 2) return;
      d = b.left - a.right;
    } else {
      var dx = Math.max(0, a.left - b.right, b.left - a.right);
      var dy = Math.max(0, a.top - b.bottom, b.top - a.bottom);
      d = Math.sqrt(dx * dx + dy * dy);
    }
    if (d < bestD) { bestD = d; best = e; }
  });
  return { list: best ? [best] : [] };
}

// ------------------------------------------------------------ locators
function candidates(scope, l) {
  var v = l.value;
  switch (l.kind) {
    case 'css':
      return all(scope, v);
    case 'xpath': {
      var snap = D.evaluate(v, scope, null, XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null);
      var out = [];
      for (var i = 0; i < snap.snapshotLength; i++) {
        var n = snap.snapshotItem(i);
        if (n.nodeType === 1) out.push(n);
      }
      return out;
    }
    case 'label':
      return byLabel(scope, v);
    case 'text':
      return byText(scope, norm(v));
    case 'name':
      return all(scope, '[name="' + CSS.escape(v) + '"]');
    case 'id':
      return all(scope, '[id="' + CSS.escape(v) + '"]');
    case 'field':
      return all(scope, 'input:not([type=hidden]), select, textarea, button, [contenteditable=""], [contenteditable=true]');
  }
  throw new Error('unknown locator kind ' + l.kind);
}
function describe(l) {
  var s = l.kind === 'field' ? 'the field' : l.kind + " '" + l.value + "'";
  if (l.right_of != null) s += " right_of '" + l.right_of + "'";
  if (l.near != null) s += " near '" + l.near + "'";
  if (l.nth) s += ' (nth ' + l.nth + ')';
  if (l.within) s += ' within ' + describe(l.within);
  return s;
}
// `<input name="usr">`, `<button> 'Sign in'`, with the caption that matched.
function describeEl(e) {
  var tag = e.tagName.toLowerCase(), s = '<' + tag;
  if (e.id) s += ' id="' + e.id + '"';
  else if (e.getAttribute('name')) s += ' name="' + e.getAttribute('name') + '"';
  if (tag === 'input' && e.type && e.type !== 'text') s += ' type="' + e.type + '"';
  if (tag === 'input' && /^(radio|checkbox)$/.test(e.type) && e.value) s += ' value="' + e.value + '"';
  s += '>';
  if (e.__clerkRule) s += " (" + e.__clerkRule + " '" + e.__clerkCaption + "')";
  else if (!/^(INPUT|SELECT|TEXTAREA)$/.test(e.tagName)) {
    var t = norm(e.innerText || e.textContent);
    if (t) s += " '" + (t.length > 40 ? t.slice(0, 40) + '...' : t) + "'";
  }
  return s;
}
var ERROR_PATTERNS = '[class*=error i], font[color=red i], font[color="#ff0000" i], ' +
  'font[color="#cc0000" i], [role=alert], .alert-danger';
function errorsIn(doc, seen, out, shownEls) {
  var sel = op.errorPatterns || ERROR_PATTERNS;
  var els;
  try { els = all(doc, sel); } catch (e) { return; }
  els.forEach(function (e) {
    if (!shown(e)) return;
    // A message inside a message already quoted is not quoted twice.
    for (var i = 0; i < shownEls.length; i++) if (shownEls[i].contains(e)) return;
    var t = norm(e.innerText);
    if (!t || seen.indexOf(t) >= 0) return;
    seen.push(t);
    shownEls.push(e);
    out.push(t.length > 200 ? t.slice(0, 200) + '...' : t);
  });
}
function pageErrors() {
  var seen = [], out = [], els = [];
  errorsIn(document, seen, out, els);
  eachFrame(window, [], [], function (w, doc) { errorsIn(doc, seen, out, els); });
  return out.slice(0, 6);
}
// Visits the same-origin frames of `win`, depth first.
function eachFrame(win, path, names, visit) {
  var frames;
  try { frames = all(win.document, 'iframe, frame'); } catch (e) { return; }
  frames.forEach(function (f) {
    var w = f.contentWindow, doc = null;
    try { doc = w && w.document; if (doc) doc.documentElement; } catch (e) { doc = null; }
    var index = -1;
    for (var i = 0; i < win.frames.length; i++) if (win.frames[i] === w) { index = i; break; }
    var name = f.getAttribute('name') || f.id || f.getAttribute('title') || f.getAttribute('src') || ('#' + (index + 1));
    if (!doc || index < 0) {
      visit(null, null, path.concat([index]), names.concat([name]), f);
      return;
    }
    if (visit(w, doc, path.concat([index]), names.concat([name]), f) === false) return;
    eachFrame(w, path.concat([index]), names.concat([name]), visit);
  });
}
function namedWindow(win, name) {
  for (var i = 0; i < win.frames.length; i++) {
    var f = win.frames[i];
    try {
      if (f.name === name) return f;
      var inner = namedWindow(f, name);
      if (inner) return inner;
    } catch (e) { /* another origin */ }
  }
  return null;
}
function pathOf(win) {
  var path = [];
  try {
    while (win !== win.parent) {
      var p = win.parent, idx = -1;
      for (var i = 0; i < p.frames.length; i++) if (p.frames[i] === win) { idx = i; break; }
      path.unshift(idx);
      win = p;
    }
  } catch (e) { return []; }
  return path;
}
function frameNames() {
  var names = [];
  eachFrame(window, [], [], function (w, doc, path, ns) { names.push(ns.join(' > ') + (doc ? '' : ' (other origin)')); });
  return names;
}
function fail(reason, message, extra) {
  var r = { ok: false, reason: reason, message: message, url: String(location.href),
            title: document.title, errors: reason === 'bad' ? [] : pageErrors() };
  if (extra) for (var k in extra) r[k] = extra[k];
  return r;
}

// Finds the one element a locator names in document D. `need`: present | visible | interact.
function pickIn(scope0, l, need, skipMarked) {
  var scope = scope0;
  if (l.within) {
    var s = pickIn(scope0, l.within, 'present', null);
    if (!s.el) {
      s.message = 'within ' + describe(l.within) + ': ' + s.message;
      return s;
    }
    scope = s.el;
  }
  var list;
  try {
    list = candidates(scope, l);
  } catch (e) {
    return { reason: 'bad', message: 'invalid ' + l.kind + " '" + l.value + "': " + e.message };
  }
  if (l.right_of != null || l.near != null) {
    var an = byAnchor(scope, list, l);
    if (an.many) return { reason: 'many', count: 2, shown: 2, message: an.many };
    if (an.none) return { reason: 'none', count: 0, shown: 0, message: an.none };
    list = an.list;
  }
  if (op.value != null && op.op === 'check') {
    toggleChoices = null;
    list = pickToggle(list);
    if (!list.length && toggleChoices) {
      return { reason: 'business', count: 0, shown: 0,
               message: "no radio button or checkbox with value '" + op.value + "' in " + describe(l) +
                 ' (values: ' + toggleChoices.join(', ') + ')' };
    }
  }
  if (skipMarked) list = list.filter(function (e) { return e.__clerkSeen !== skipMarked; });
  var visible = list.filter(shown);
  var el = null;
  if (l.nth) {
    var pool = visible.length >= l.nth ? visible : list;
    if (pool.length < l.nth) {
      return { reason: 'none', count: list.length, shown: visible.length,
               message: list.length ? 'only ' + list.length + ' element' + (list.length > 1 ? 's' : '') +
                 ' match ' + describe(l) : 'no element matches ' + describe(l) };
    }
    el = pool[l.nth - 1];
  } else if (visible.length === 1) {
    el = visible[0];
  } else if (visible.length > 1) {
    return { reason: 'many', count: list.length, shown: visible.length,
             message: visible.length + ' elements match ' + describe(l) + ' (add nth or within): ' +
               visible.slice(0, 6).map(describeEl).join(', ') + (visible.length > 6 ? ', ...' : '') };
  } else if (list.length === 0) {
    return { reason: 'none', count: 0, shown: 0, message: 'no element matches ' + describe(l) };
  } else if (need === 'present' && list.length === 1) {
    el = list[0];
  } else if (need === 'present') {
    return { reason: 'many', count: list.length, shown: 0,
             message: list.length + ' hidden elements match ' + describe(l) + ' (add nth or within)' };
  } else {
    return { reason: 'hidden', count: list.length, shown: 0,
             message: describe(l) + ' is present but hidden' };
  }
  if (need === 'visible' || need === 'interact') {
    if (!shown(el)) {
      return { reason: 'hidden', count: list.length, shown: visible.length,
               message: describe(l) + ' is present but hidden' };
    }
  }
  if (need === 'interact' && !enabled(el)) {
    return { reason: 'disabled', count: list.length, shown: visible.length,
             message: describe(l) + ' is present but disabled' +
               (isField(el) ? '' : ' (waited for it to be enabled)') , field: isField(el) };
  }
  return { el: el, count: list.length, shown: visible.length };
}
// `browser.check { value }`: the radio button (or checkbox) of the group
// with that value or that text after it; remembers what the group offers.
var toggleChoices = null;
function pickToggle(list) {
  var want = norm(op.value), toggles = list.filter(isToggle);
  if (!toggles.length) return list;
  toggleChoices = toggles.map(function (e) {
    var after = caption(e, 'text-after')[0] || caption(e, 'label')[0] || '';
    return e.value + (after && after !== e.value ? " ('" + after + "')" : '');
  });
  return toggles.filter(function (e) {
    var texts = caption(e, 'text-after').concat(caption(e, 'label'));
    return e.value === want || texts.some(function (t) { return normLabel(t) === normLabel(want); });
  });
}
// pickIn in this document, then — when nothing matched here at all — in
// the same-origin frames (recursively).
function pick(l, need, skipMarked) {
  D = document;
  var r = pickIn(document, l, need, skipMarked);
  if (r.el || r.reason === 'bad' || r.count > 0) return r;
  var hits = [], visited = 0;
  eachFrame(window, [], [], function (w, doc, path, names) {
    if (!doc) return;
    visited++;
    D = doc;
    var fr;
    try { fr = pickIn(doc, l, need, skipMarked); } catch (e) { fr = { count: 0 }; }
    if (fr.el || fr.count > 0) hits.push({ r: fr, path: path, name: names.join(' > '), doc: doc });
  });
  D = document;
  if (!hits.length) {
    if (visited || frameNames().length) {
      var fn = frameNames();
      r.message += ' in the page or its ' + (fn.length === 1 ? 'frame ' : fn.length + ' frames ') + fn.join(', ');
    }
    return r;
  }
  if (hits.length > 1) {
    return { reason: 'many', count: hits.length, shown: hits.length,
             message: describe(l) + ' matches in ' + hits.length + ' frames (' +
               hits.map(function (h) { return h.name; }).join(', ') + '): enter one with browser.frame' };
  }
  var h = hits[0];
  D = h.doc;
  h.r.framePath = h.path;
  h.r.frame = h.name;
  if (!h.r.el) h.r.message += " (in frame '" + h.name + "')";
  return h.r;
}
// Adds the page's captions, a did-you-mean and the frames to a label miss.
function explainMiss(found) {
  // Only for the final answer: listing a big form's captions on every poll would be waste.
  if (!op.explain || loc.kind !== 'label' || found.reason !== 'none' || (loc.within && !op.inForm)) return found.message;
  var caps = pageCaptions(document);
  var docs = [document];
  eachFrame(window, [], [], function (w, doc) {
    if (!doc) return;
    D = doc;
    docs.push(doc);
    pageCaptions(doc).forEach(function (c) { if (caps.indexOf(c) < 0) caps.push(c); });
  });
  D = document;
  var msg = found.message;
  var guess = didYouMean(loc.value, caps);
  if (guess) msg += " (did you mean '" + guess + "'?)";
  if (caps.length) {
    msg += '; the form fields here are labelled ' + caps.slice(0, 15).map(function (c) { return "'" + c + "'"; }).join(', ') +
      (caps.length > 15 ? ', ... (' + caps.length + ' in all)' : '');
  } else {
    msg += '; the page has no visible form fields';
  }
  var anyLabel = docs.some(function (d) { return !!d.querySelector('label'); });
  if (!anyLabel) msg += '; the page has no <label> elements (captions come from table cells and text beside the fields)';
  return msg;
}

function setValue(el, value) {
  // The native setter, so that frameworks tracking `value` notice the change.
  var w = el.ownerDocument.defaultView || window;
  var proto = el.tagName === 'TEXTAREA' ? w.HTMLTextAreaElement.prototype :
    el.tagName === 'SELECT' ? w.HTMLSelectElement.prototype : w.HTMLInputElement.prototype;
  var desc = Object.getOwnPropertyDescriptor(proto, 'value');
  if (desc && desc.set) desc.set.call(el, value); else el.value = value;
}
function fire(el, names) {
  var w = el.ownerDocument.defaultView || window;
  names.forEach(function (n) { el.dispatchEvent(new w.Event(n, { bubbles: true })); });
}
function tableRows(t) {
  var rows = Array.prototype.slice.call(t.rows);
  var headRow = null;
  if (t.tHead && t.tHead.rows.length) headRow = t.tHead.rows[t.tHead.rows.length - 1];
  else if (rows.length && rows[0].querySelector('th')) headRow = rows[0];
  var headers = [];
  var seen = {};
  if (headRow) {
    Array.prototype.forEach.call(headRow.cells, function (c, i) {
      var h = norm(c.innerText) || ('column_' + (i + 1));
      if (seen[h]) { seen[h]++; h = h + '_' + seen[h]; } else { seen[h] = 1; }
      headers.push(h);
    });
  }
  var out = [];
  rows.forEach(function (r) {
    if (r === headRow || (t.tHead && r.parentNode === t.tHead)) return;
    if (!r.querySelector('td')) return;
    var cells = Array.prototype.map.call(r.cells, function (c) { return norm(c.innerText); });
    out.push(cells);
  });
  if (!headRow) {
    var n = out.reduce(function (m, r) { return Math.max(m, r.length); }, 0);
    for (var i = 0; i < n; i++) headers.push('column_' + (i + 1));
  }
  return { headers: headers, rows: out };
}
function textOf(e) {
  return norm(e.innerText !== undefined && e.innerText !== '' ? e.innerText : (e.value != null && e.tagName !== 'SELECT' ? e.value : e.textContent));
}

// The elements a locator names, without insisting on one (wait_for, read_texts).
function listOf(l) {
  function listIn(doc) {
    D = doc;
    var sc = doc;
    if (l.within) {
      var w = pickIn(doc, l.within, 'present', null);
      if (!w.el) return [];
      sc = w.el;
    }
    var list = candidates(sc, l);
    if (l.right_of != null || l.near != null) {
      var an = byAnchor(sc, list, l);
      list = an.list || [];
    }
    if (l.nth) list = list.length >= l.nth ? [list[l.nth - 1]] : [];
    return list;
  }
  var list = listIn(document), frame = null;
  if (!list.length) {
    eachFrame(window, [], [], function (w, doc, path, names) {
      if (!doc || list.length) return;
      var fl = [];
      try { fl = listIn(doc); } catch (e) { fl = []; }
      if (fl.length) { list = fl; frame = names.join(' > '); }
    });
  }
  D = document;
  return { list: list, frame: frame };
}

// wait_for and read_texts look at the state of the locator, not one element.
if (op.op === 'state' || op.op === 'texts') {
  var got;
  try {
    got = listOf(loc);
  } catch (e) {
    return fail('bad', 'invalid ' + loc.kind + " '" + loc.value + "': " + e.message);
  }
  var list = got.list;
  var vis = list.filter(shown);
  if (op.op === 'texts') {
    return { ok: true, texts: vis.map(textOf), count: list.length, shown: vis.length, frame: got.frame,
             url: String(location.href) };
  }
  var okState;
  switch (op.state) {
    case 'present': okState = list.length > 0; break;
    case 'visible': okState = vis.length > 0; break;
    case 'hidden': okState = vis.length === 0; break;
    case 'gone': okState = list.length === 0; break;
  }
  if (okState && op.contains != null) {
    okState = vis.some(function (e) {
      return norm(e.innerText || e.value).indexOf(norm(op.contains)) >= 0;
    });
  }
  if (okState) {
    return { ok: true, count: list.length, shown: vis.length, frame: got.frame,
             texts: vis.slice(0, 50).map(textOf) };
  }
  var what = op.contains != null ? "to contain '" + op.contains + "'" : 'to be ' + op.state;
  var sample = vis.length ? norm(vis[0].innerText).slice(0, 120) : '';
  return fail('state', describe(loc) + ' did not become ' + what.replace(/^to be /, '').replace(/^to /, '') +
    ' (' + list.length + ' present, ' + vis.length + ' visible' + (sample ? ", text '" + sample + "'" : '') + ')',
    { count: list.length, shown: vis.length });
}

// browser.fill_form: every field of a form in this one call.
if (op.op === 'form') {
  return fillForm();
}

var need = op.need || 'interact';
var found = pick(loc, need, op.skipMarked || null);
if (!found.el) {
  var reason = found.reason;
  // A disabled form field is the data's problem, not the page's timing.
  if (reason === 'disabled' && found.field && op.op !== 'find') reason = 'business';
  var extra = { count: found.count || 0, shown: found.shown || 0 };
  if (found.frame) extra.frame = found.frame;
  return fail(reason, explainMiss(found), extra);
}
var el = found.el;
// WebDriver acts only on elements of the frame it is in: clerk enters the
// frame and asks again.
if (found.framePath && op.op === 'find') {
  D = document;
  return { ok: false, reason: 'frame', framePath: found.framePath, frame: found.frame,
           message: describe(loc) + " is in frame '" + found.frame + "'" };
}
var answer = perform();
D = document;
if (answer && answer.ok) {
  answer.url = String(location.href);
  if (!('doc' in answer)) answer.doc = window.__clerkDoc || null;
  if (found.frame) answer.frame = found.frame;
}
return answer;

function perform() {

switch (op.op) {
  case 'find': {
    var r = { ok: true, el: el, tag: el.tagName.toLowerCase() };
    // What a click on it submits (for "the portal answered 500 on POST /x").
    var form = el.form || (el.closest && el.closest('form'));
    var ty = String(el.type || '').toLowerCase();
    var submitter = (el.tagName === 'BUTTON' && (ty === '' || ty === 'submit')) ||
      (el.tagName === 'INPUT' && !/^(button|reset|checkbox|radio|file)$/.test(ty));
    if (form && submitter) {
      r.form = { method: String(form.getAttribute('method') || 'get').toUpperCase(),
                 action: String(form.action || location.href) };
    }
    // The window the click loads a page into (a link or form may target
    // another frame or the whole window), as frame indexes from the top.
    var link = el.closest ? el.closest('a[target], area[target]') : null;
    var t = link ? link.getAttribute('target') : ((r.form && form.getAttribute('target')) || '');
    if (!t) { var base = el.ownerDocument.querySelector('base[target]'); if (base) t = base.getAttribute('target'); }
    var tw = el.ownerDocument.defaultView || window;
    if (t === '_top') tw = tw.top;
    else if (t === '_parent') tw = tw.parent;
    else if (t && t !== '_self' && t !== '_blank') { var named = namedWindow(tw.top, t); if (named) tw = named; }
    r.targetPath = pathOf(tw);
    try { r.doc = tw.__clerkDoc || null; } catch (e) { r.doc = null; }
    return r;
  }
  case 'fill': {
    if (el.isContentEditable) {
      el.focus();
      el.textContent = op.value;
      fire(el, ['input']);
      return { ok: true };
    }
    if (!/^(INPUT|TEXTAREA)$/.test(el.tagName)) {
      return fail('op', describe(loc) + ' is a <' + el.tagName.toLowerCase() + '>, not a text field' +
        (el.tagName === 'SELECT' ? ' (use browser.select)' : ''));
    }
    var type = String(el.type).toLowerCase();
    if (/^(checkbox|radio|file|submit|button|image|reset)$/.test(type)) {
      return fail('op', describe(loc) + ' is a ' + type + ' input, not a text field' +
        (type === 'file' ? ' (use browser.upload)' : (type === 'checkbox' || type === 'radio') ? ' (use browser.check)' : ''));
    }
    if (el.readOnly) return fail('business', describe(loc) + ' is read-only');
    el.focus();
    setValue(el, op.value);
    fire(el, ['input', 'change']);
    if (el.value !== op.value) {
      var hint = type === 'date' ? ' (a date field takes YYYY-MM-DD)' :
        type === 'number' ? ' (a number field takes digits only)' : '';
      return fail('business', describe(loc) + ' (' + type + ' field) did not accept the value' + hint);
    }
    return { ok: true };
  }
  case 'select': {
    if (el.tagName !== 'SELECT') {
      return fail('op', describe(loc) + ' is a <' + el.tagName.toLowerCase() + '>, not a select');
    }
    var opts = Array.prototype.slice.call(el.options);
    var match = opts.filter(function (o) {
      return op.value != null ? o.value === op.value : norm(o.text) === norm(op.option);
    });
    if (!match.length && op.value == null) {
      match = opts.filter(function (o) { return loose(o.text) === loose(op.option); });
    }
    if (!match.length) {
      var names = opts.map(function (o) { return op.value != null ? o.value : norm(o.text); });
      return fail('business', 'no option ' + (op.value != null ? "with value '" + op.value + "'" : "'" + op.option + "'") +
        ' in ' + describe(loc) + ' (options: ' + names.join(', ') + ')');
    }
    if (match[0].disabled) {
      return fail('business', "option '" + norm(match[0].text) + "' of " + describe(loc) + ' is disabled');
    }
    el.focus();
    opts.forEach(function (o) { if (!el.multiple) o.selected = false; });
    match[0].selected = true;
    fire(el, ['input', 'change']);
    return { ok: true, value: match[0].value, option: norm(match[0].text) };
  }
  case 'check': {
    var t = String(el.type).toLowerCase();
    if (el.tagName !== 'INPUT' || (t !== 'checkbox' && t !== 'radio')) {
      if (el.getAttribute('role') === 'checkbox' || el.getAttribute('role') === 'switch') {
        if ((el.getAttribute('aria-checked') === 'true') !== op.checked) el.click();
        return { ok: true, checked: el.getAttribute('aria-checked') === 'true' };
      }
      return fail('op', describe(loc) + ' is not a checkbox or radio button');
    }
    if (!op.checked && t === 'radio') {
      return fail('op', describe(loc) + ' is a radio button: check another option instead of unchecking it');
    }
    if (el.checked !== op.checked) el.click();
    if (el.checked !== op.checked) {
      return fail('business', describe(loc) + ' did not become ' + (op.checked ? 'checked' : 'unchecked') +
        ' (a script on the page keeps it)');
    }
    return { ok: true, checked: el.checked, value: el.value };
  }
  case 'text':
    return { ok: true, value: norm(el.innerText !== undefined && el.innerText !== '' ? el.innerText : el.textContent) };
  case 'value':
    if (el.isContentEditable) return { ok: true, value: el.textContent };
    if (el.type === 'checkbox' || el.type === 'radio') return { ok: true, value: el.checked };
    return { ok: true, value: el.value === undefined ? null : el.value };
  case 'attr':
    return { ok: true, value: el.getAttribute(op.name) };
  case 'table': {
    if (el.tagName !== 'TABLE') {
      var inner = el.querySelector('table');
      if (!inner) return fail('op', describe(loc) + ' is not a table and holds none');
      el = inner;
    }
    var data = tableRows(el);
    if (op.mark) el.__clerkSeen = op.mark;
    data.ok = true;
    return data;
  }
}
return fail('bad', 'unknown operation ' + op.op);
}

// ------------------------------------------------------------ fill_form
// op.fields: [{ i, label, kind: text|select|check|choose, value }] in the
// order written; `loc` is the `within` locator or null. Each field is found
// with the label rules above and set with the same operation as the single
// action (fill / select / check); then every field is read back, so a page
// script that undid an earlier field is caught. Answers
// { ok, fields: [{ i, ok, reason?, message?, ... }], url, doc, errors }.
function fillForm() {
  var form = op, within = loc, out = [], done = [];
  form.fields.forEach(function (f) {
    var r;
    try { r = formField(form, within, f); } catch (e) { r = { ok: false, reason: 'bad', message: String(e && e.message || e) }; }
    r.i = f.i;
    out.push(r);
    if (r.ok) done.push({ f: f, r: r });
    op = form; loc = within; D = document;
  });
  // Read back: a change handler of a later field may have reset an earlier one.
  done.forEach(function (d) {
    var e = d.r.__el, now = currentValue(e, d.f.kind);
    if (!sameValue(now, d.r.__want)) {
      d.r.ok = false;
      d.r.reason = 'business';
      d.r.message = "label '" + d.f.label + "' did not keep its value: the page changed it to " +
        JSON.stringify(now) + ' after the other fields were set';
    }
  });
  var bad = false;
  out.forEach(function (r) { delete r.__el; delete r.__want; if (!r.ok) bad = true; });
  var answer = { ok: !bad, fields: out, url: String(location.href), doc: window.__clerkDoc || null };
  if (bad) { answer.errors = pageErrors(); answer.title = document.title; }
  return answer;
}
function currentValue(e, kind) {
  if (!e) return null;
  if (kind === 'check' || kind === 'choose') {
    return typeof e.checked === 'boolean' ? e.checked : e.getAttribute('aria-checked') === 'true';
  }
  if (e.isContentEditable) return e.textContent;
  return e.value;
}
function sameValue(a, b) {
  return a === b;
}
function formField(form, within, f) {
  var fl = { kind: 'label', value: f.label, nth: null, within: within || null, right_of: null, near: null };
  loc = fl;
  if (f.kind === 'choose') return chooseIn(form, fl, f);
  // inForm: a label miss is explained (captions, did-you-mean) also with `within`.
  op = { op: f.kind === 'text' ? 'fill' : f.kind, need: 'interact', errorPatterns: form.errorPatterns,
         explain: form.explain, inForm: true };
  if (f.kind === 'text') op.value = f.value;
  if (f.kind === 'select') op.option = f.value;
  if (f.kind === 'check') op.checked = !!f.value;
  var found = pick(fl, 'interact', null);
  if (!found.el) {
    var reason = found.reason;
    if (reason === 'disabled' && found.field) reason = 'business';
    return { ok: false, reason: reason, message: explainMiss(found), frame: found.frame || null };
  }
  el = found.el;
  var t = String(el.type || '').toLowerCase(), tag = el.tagName;
  var toggle = tag === 'INPUT' && (t === 'checkbox' || t === 'radio');
  if (f.kind === 'text' && tag === 'SELECT') {
    return { ok: false, reason: 'op', message: describe(fl) + ' is a drop-down: write `{ select: "' + f.value + '" }`' };
  }
  if (f.kind === 'text' && toggle) {
    return { ok: false, reason: 'op', message: describe(fl) + ' is a ' + t + ': write true or false' };
  }
  if (f.kind !== 'select' && f.kind !== 'check' && tag === 'SELECT') {
    return { ok: false, reason: 'op', message: describe(fl) + ' is a drop-down: write `{ select: "..." }`' };
  }
  if (f.kind === 'select' && tag !== 'SELECT') {
    return { ok: false, reason: 'op', message: describe(fl) + ' is a <' + tag.toLowerCase() + '>, not a drop-down' };
  }
  if (f.kind === 'check' && !toggle && el.getAttribute('role') !== 'checkbox' && el.getAttribute('role') !== 'switch') {
    return { ok: false, reason: 'op', message: describe(fl) + ' is ' + (tag === 'INPUT' ? 'a ' + (t || 'text') + ' field' : 'a <' + tag.toLowerCase() + '>') +
      ', not a checkbox: true/false ticks checkboxes; write text in quotes' };
  }
  var a = perform();
  D = document;
  if (!a || !a.ok) {
    return { ok: false, reason: a ? a.reason : 'bad', message: a ? a.message : 'no answer', frame: found.frame || null };
  }
  var r = { ok: true, rule: el.__clerkRule || null, element: describeEl(el), frame: found.frame || null, __el: el };
  if (f.kind === 'select') { r.value = a.value; r.option = a.option; r.__want = a.value; }
  else if (f.kind === 'check') { r.checked = !!a.checked; r.__want = !!f.value; }
  else { r.__want = f.value; }
  if (el.isContentEditable) r.__want = f.value;
  return r;
}
// `{ choose: "By post" }`: the radio button of the group the label names
// (its <legend>, the table cell left of it, a radiogroup's aria label, the
// text before its first button), by its value or the text after it.
function radioGroups(doc, scope) {
  var groups = [], byKey = new Map();
  all(scope, 'input[type=radio]').forEach(function (r) {
    var key = r.name ? (r.form ? 'f' + Array.prototype.indexOf.call(doc.forms, r.form) : 'd') + ':' + r.name : r;
    var g = byKey.get(key);
    if (!g) { g = []; byKey.set(key, g); groups.push(g); }
    g.push(r);
  });
  return groups;
}
function groupCaptions(g) {
  var first = g[0], out = [];
  var fs = first.closest('fieldset');
  if (fs && g.every(function (r) { return fs.contains(r); })) {
    var lg = fs.querySelector('legend');
    if (lg && norm(labelText(lg))) out.push(norm(labelText(lg)));
  }
  var rg = first.closest('[role=radiogroup]');
  if (rg) {
    var al = rg.getAttribute('aria-label');
    if (al && norm(al)) out.push(norm(al));
    var ids = rg.getAttribute('aria-labelledby');
    if (ids) {
      var t = String(ids).split(/\s+/).map(function (id) {
        var l = first.ownerDocument.getElementById(id); return l ? l.textContent : '';
      }).join(' ');
      if (norm(t)) out.push(norm(t));
    }
  }
  var cell = cellOf(first);
  if (cell) {
    var left = cell.previousElementSibling;
    while (left && !cellText(left) && !holdsControl(left)) left = left.previousElementSibling;
    var lt = cellText(left);
    if (lt) out.push(lt);
  }
  var before = siblingCaption(skipBlank(first.previousSibling, 'previousSibling'));
  if (!before && first.parentElement && first.parentElement.tagName === 'LABEL') {
    before = siblingCaption(skipBlank(first.parentElement.previousSibling, 'previousSibling'));
  }
  if (before) out.push(before);
  return out;
}
function optionTexts(r) {
  return caption(r, 'text-after').concat(caption(r, 'label'));
}
function chooseIn(form, fl, f) {
  var docs = [document];
  eachFrame(window, [], [], function (w, doc) { if (doc) docs.push(doc); });
  var hits = [], frameOf = null;
  for (var pass = 0; pass < 2 && !hits.length; pass++) {
    docs.forEach(function (doc, di) {
      D = doc;
      var scope = doc;
      if (fl.within) {
        var s = pickIn(doc, fl.within, 'present', null);
        if (!s.el) return;
        scope = s.el;
      }
      radioGroups(doc, scope).forEach(function (g) {
        var caps = groupCaptions(g);
        var m = caps.some(function (c) {
          return pass === 0 ? normLabel(c) === normLabel(f.label) : loose(c) === loose(f.label);
        });
        if (m && g.some(shown)) { hits.push(g); if (di > 0) frameOf = doc; }
      });
    });
  }
  D = document;
  if (!hits.length) {
    return { ok: false, reason: 'none', message: 'no group of radio buttons is labelled ' + "'" + f.label + "'" +
      (fl.within ? ' within ' + describe(fl.within) : '') };
  }
  if (hits.length > 1) {
    return { ok: false, reason: 'many', message: hits.length + " groups of radio buttons are labelled '" + f.label + "'" };
  }
  var g = hits[0], want = norm(f.value);
  var pickR = g.filter(function (r) { return r.value === want; });
  if (!pickR.length) {
    pickR = g.filter(function (r) {
      return optionTexts(r).some(function (t) { return normLabel(t) === normLabel(want); });
    });
  }
  if (!pickR.length) {
    pickR = g.filter(function (r) {
      return r.value.toLowerCase() === want.toLowerCase() ||
        optionTexts(r).some(function (t) { return loose(t) === loose(want); });
    });
  }
  var offered = g.map(function (r) {
    var after = optionTexts(r)[0] || '';
    return r.value + (after && after !== r.value ? " ('" + after + "')" : '');
  });
  if (!pickR.length) {
    return { ok: false, reason: 'business', message: "no choice '" + f.value + "' in the radio buttons labelled '" +
      f.label + "' (choices: " + offered.join(', ') + ')' };
  }
  var r = pickR[0];
  if (!enabled(r)) {
    return { ok: false, reason: 'business', message: "choice '" + f.value + "' of '" + f.label + "' is disabled" };
  }
  if (!shown(r)) {
    return { ok: false, reason: 'hidden', message: "choice '" + f.value + "' of '" + f.label + "' is present but hidden" };
  }
  if (!r.checked) r.click();
  if (!r.checked) {
    return { ok: false, reason: 'business', message: "choice '" + f.value + "' of '" + f.label + "' did not become checked (a script on the page keeps it)" };
  }
  var fr = null;
  if (frameOf) eachFrame(window, [], [], function (w, doc, path, names) { if (doc === frameOf) fr = names.join(' > '); });
  return { ok: true, value: r.value, element: describeEl(r), frame: fr, __el: r, __want: true };
}
}});
