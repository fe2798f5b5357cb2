// Filter the work items by key or state. The report is complete without
// script; this only hides rows.
(function () {
  var box = document.querySelector('.filter');
  var input = document.getElementById('filter');
  var state = document.getElementById('state-filter');
  var shown = document.getElementById('shown');
  if (!box || !input || !state) return;
  box.hidden = false;
  var items = Array.prototype.slice.call(document.querySelectorAll('tbody.item'));
  function apply() {
    var q = input.value.trim().toLowerCase();
    var st = state.value;
    var n = 0;
    items.forEach(function (b) {
      var key = (b.getAttribute('data-key') || '').toLowerCase();
      var s = b.getAttribute('data-state') || '';
      var ok = (!q || key.indexOf(q) >= 0 || s.indexOf(q) >= 0) && (!st || s === st);
      b.hidden = !ok;
      if (ok) n++;
    });
    shown.textContent = n + ' of ' + items.length + ' items shown';
  }
  input.addEventListener('input', apply);
  state.addEventListener('change', apply);
  // A link to #item-KEY opens that item's actions.
  var target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (target) { var d = target.querySelector('details'); if (d) d.open = true; }
  apply();
})();
