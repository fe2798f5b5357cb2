// clerk's page-side element resolver: finds the element a locator names and
// performs the step's operation on it, in ONE WebDriver round trip.
//
// This file installs `window.__clerkResolve(loc, op)` (clerk also asks
// Chromium to install it in every new document, so most calls send only a
// one-line script):
// loc: { kind, value, nth, within }
// op:  { op, need, ... }
// Returns { ok: true, ... } or { ok: false, reason, message, count, shown,
// url, title, errors } where errors are the page's visible error messages.
Object.defineProperty(window, '__clerkResolve', { configurable: true, writable: true, value: function (loc, op) {
function norm(s) {
  return String(s == null ? '' : s).replace(/[\s\u00a0]+/g, ' ').trim();
}
function normLabel(s) {
  return norm(s).replace(/\s*[:*]+$/, '').trim();
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
// Text of a label without the text of the controls it wraps (a nested
// <select> would otherwise add its options to the label).
function labelText(node) {
  var out = '';
  node.childNodes.forEach(function (c) {
    if (c.nodeType === 3) {
      out += c.nodeValue;
    } else if (c.nodeType === 1 && !/^(INPUT|SELECT|TEXTAREA|BUTTON|SCRIPT|STYLE)$/.test(c.tagName)) {
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
function byLabel(scope, want) {
  var exact = [], loose = [], lw = want.toLowerCase();
  function consider(text, el) {
    var t = normLabel(text);
    if (t === want) exact.push(el);
    else if (t.toLowerCase() === lw) loose.push(el);
  }
  all(scope, 'label').forEach(function (l) {
    var c = l.control;
    if (c) consider(labelText(l), c);
  });
  all(scope, '[aria-label]').forEach(function (e) {
    consider(e.getAttribute('aria-label'), e);
  });
  all(scope, '[aria-labelledby]').forEach(function (e) {
    var text = String(e.getAttribute('aria-labelledby')).split(/\s+/).map(function (id) {
      var l = document.getElementById(id);
      return l ? l.textContent : '';
    }).join(' ');
    consider(text, e);
  });
  return uniq(exact.length ? exact : loose);
}
var CLICKABLE = 'button, a, input[type=submit], input[type=button], input[type=reset], ' +
  'input[type=image], [role=button], [role=link], [role=tab], [role=menuitem], summary';
function byText(scope, want) {
  var hits = all(scope, CLICKABLE).filter(function (e) {
    var t = e.tagName === 'INPUT' ? (e.value || e.getAttribute('alt') || '') : e.textContent;
    return norm(t) === want;
  });
  if (hits.length) return hits;
  // Any element whose own text is exactly `want`, deepest first.
  var found = [];
  all(scope, 'body *').forEach(function (e) {
    if (/^(SCRIPT|STYLE|NOSCRIPT|TEMPLATE|HEAD|TITLE)$/.test(e.tagName)) return;
    if (norm(e.textContent) !== want) return;
    for (var i = 0; i < e.children.length; i++) {
      if (norm(e.children[i].textContent) === want) return;
    }
    found.push(e);
  });
  return found;
}
function candidates(scope, l) {
  var v = l.value;
  switch (l.kind) {
    case 'css':
      return all(scope, v);
    case 'xpath': {
      var snap = document.evaluate(v, scope, null, XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null);
      var out = [];
      for (var i = 0; i < snap.snapshotLength; i++) {
        var n = snap.snapshotItem(i);
        if (n.nodeType === 1) out.push(n);
      }
      return out;
    }
    case 'label':
      return byLabel(scope, normLabel(v));
    case 'text':
      return byText(scope, norm(v));
    case 'name':
      return all(scope, '[name="' + CSS.escape(v) + '"]');
    case 'id':
      return all(scope, '[id="' + CSS.escape(v) + '"]');
  }
  throw new Error('unknown locator kind ' + l.kind);
}
function describe(l) {
  var s = l.kind + " '" + l.value + "'";
  if (l.nth) s += ' (nth ' + l.nth + ')';
  if (l.within) s += ' within ' + describe(l.within);
  return s;
}
function pageErrors() {
  var seen = [], out = [];
  all(document, '.error, .errors, [role=alert], .alert-danger, .validation-error, .field-error')
    .forEach(function (e) {
      if (!shown(e)) return;
      var t = norm(e.innerText);
      if (!t || seen.indexOf(t) >= 0) return;
      seen.push(t);
      out.push(t.length > 200 ? t.slice(0, 200) + '...' : t);
    });
  return out.slice(0, 6);
}
function fail(reason, message, extra) {
  var r = { ok: false, reason: reason, message: message, url: String(location.href),
            title: document.title, errors: reason === 'bad' ? [] : pageErrors() };
  if (extra) for (var k in extra) r[k] = extra[k];
  return r;
}

// Finds the one element a locator names. `need`: present | visible | interact.
function pick(l, need, skipMarked) {
  var scope = document;
  if (l.within) {
    var s = pick(l.within, 'present', null);
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
             message: visible.length + ' elements match ' + describe(l) + ' (add nth or within)' };
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
             message: describe(l) + ' is present but disabled' };
  }
  return { el: el, count: list.length, shown: visible.length };
}

function setValue(el, value) {
  // The native setter, so that frameworks tracking `value` notice the change.
  var proto = el.tagName === 'TEXTAREA' ? HTMLTextAreaElement.prototype :
    el.tagName === 'SELECT' ? HTMLSelectElement.prototype : HTMLInputElement.prototype;
  var desc = Object.getOwnPropertyDescriptor(proto, 'value');
  if (desc && desc.set) desc.set.call(el, value); else el.value = value;
}
function fire(el, names) {
  names.forEach(function (n) { el.dispatchEvent(new Event(n, { bubbles: true })); });
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

// wait_for checks the state of the locator, not one element.
if (op.op === 'state') {
  var scopeOk = true, list = [];
  try {
    var sc = document;
    if (loc.within) {
      var w = pick(loc.within, 'present', null);
      if (w.el) sc = w.el; else scopeOk = false;
    }
    if (scopeOk) list = candidates(sc, loc);
  } catch (e) {
    return fail('bad', 'invalid ' + loc.kind + " '" + loc.value + "': " + e.message);
  }
  if (loc.nth) list = list.length >= loc.nth ? [list[loc.nth - 1]] : [];
  var vis = list.filter(shown);
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
  if (okState) return { ok: true, count: list.length, shown: vis.length };
  var what = op.contains != null ? "to contain '" + op.contains + "'" : 'to be ' + op.state;
  var sample = vis.length ? norm(vis[0].innerText).slice(0, 120) : '';
  return fail('state', describe(loc) + ' did not become ' + what.replace(/^to be /, '').replace(/^to /, '') +
    ' (' + list.length + ' present, ' + vis.length + ' visible' + (sample ? ", text '" + sample + "'" : '') + ')',
    { count: list.length, shown: vis.length });
}

var need = op.need || 'interact';
var found = pick(loc, need, op.skipMarked || null);
if (!found.el) return fail(found.reason, found.message, { count: found.count || 0, shown: found.shown || 0 });
var el = found.el;
var answer = perform();
if (answer && answer.ok) answer.url = String(location.href);
return answer;

function perform() {

switch (op.op) {
  case 'find':
    return { ok: true, el: el, tag: el.tagName.toLowerCase() };
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
    if (el.readOnly) return fail('readonly', describe(loc) + ' is read-only');
    el.focus();
    setValue(el, op.value);
    fire(el, ['input', 'change']);
    if (el.value !== op.value) {
      var hint = type === 'date' ? ' (a date field takes YYYY-MM-DD)' :
        type === 'number' ? ' (a number field takes digits only)' : '';
      return fail('op', describe(loc) + ' (' + type + ' field) did not accept the value' + hint);
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
    if (!match.length) {
      var names = opts.map(function (o) { return op.value != null ? o.value : norm(o.text); });
      return fail('option', 'no option ' + (op.value != null ? "with value '" + op.value + "'" : "'" + op.option + "'") +
        ' in ' + describe(loc) + ' (options: ' + names.join(', ') + ')');
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
      return fail('op', describe(loc) + ' did not become ' + (op.checked ? 'checked' : 'unchecked') +
        ' (a script on the page keeps it)');
    }
    return { ok: true, checked: el.checked };
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
}});
