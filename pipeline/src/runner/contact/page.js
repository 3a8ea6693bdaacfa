// Sorts the cells of this page by run order, id, time or status; a second click on the same
// button reverses the order. `#sort=KEY` (or `#sort=-KEY`, descending) in the address sorts on
// load, so a sorted view can be bookmarked.
(function () {
  "use strict";
  var grid = document.getElementById("grid");
  var number = function (text) {
    var n = parseFloat(text);
    return isNaN(n) ? Infinity : n;
  };
  // Each key gives a list compared element by element; run order breaks ties.
  var keys = {
    order: function (c) { return [number(c.dataset.order)]; },
    id: function (c) { return [c.dataset.id, number(c.dataset.k)]; },
    time: function (c) { return [number(c.dataset.time)]; },
    status: function (c) { return [c.dataset.status === "error" ? 0 : 1]; }
  };
  var compare = function (a, b) {
    for (var i = 0; i < a.length; i++) {
      if (typeof a[i] === "string") {
        var s = a[i].localeCompare(b[i], undefined, { numeric: true });
        if (s !== 0) return s;
      } else if (a[i] !== b[i]) {
        return a[i] < b[i] ? -1 : 1;
      }
    }
    return 0;
  };
  var current = "order";
  var sortBy = function (spec) {
    var descending = spec.charAt(0) === "-";
    var key = descending ? spec.slice(1) : spec;
    if (!keys.hasOwnProperty(key)) return;
    var cells = Array.prototype.slice.call(grid.children);
    cells.sort(function (a, b) {
      var c = compare(keys[key](a), keys[key](b));
      if (descending) c = -c;
      return c !== 0 ? c : number(a.dataset.order) - number(b.dataset.order);
    });
    cells.forEach(function (c) { grid.appendChild(c); });
    document.querySelectorAll("button[data-sort]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.sort === key));
    });
    current = spec;
    try { history.replaceState(null, "", "#sort=" + spec); } catch (e) { /* file: URLs in some browsers */ }
  };
  document.querySelectorAll("button[data-sort]").forEach(function (b) {
    b.addEventListener("click", function () {
      var key = b.dataset.sort;
      sortBy(current === key ? "-" + key : key);
    });
  });
  var match = /^#sort=(-?\w+)$/.exec(location.hash);
  sortBy(match ? match[1] : "order");
})();
