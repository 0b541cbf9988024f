// mcpq console: live refresh of the overview and of an open job, and "select all".
// Served from the console's own origin (no inline script: the CSP forbids it). A region
// marked data-refresh="URL" data-every="MS" is replaced by the fragment at URL every MS
// milliseconds while the tab is visible; polling stops while document.hidden.
(function () {
  "use strict";

  function poll(el) {
    var url = el.getAttribute("data-refresh");
    var every = Math.max(500, parseInt(el.getAttribute("data-every"), 10) || 3000);
    var timer = null;
    var busy = false;

    function tick() {
      if (document.hidden || busy) { return; }
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.redirected || !r.ok) { throw new Error("status " + r.status); }
          return r.text();
        })
        .then(function (html) {
          // The fragment is the server's own escaped markup; it carries no script.
          el.innerHTML = html;
          el.setAttribute("data-updated", String(Date.now()));
          el.classList.remove("stale");
        })
        .catch(function () { el.classList.add("stale"); })
        .then(function () { busy = false; });
    }

    function start() { if (timer === null) { timer = setInterval(tick, every); } }
    function stop() { if (timer !== null) { clearInterval(timer); timer = null; } }

    document.addEventListener("visibilitychange", function () {
      if (document.hidden) { stop(); } else { tick(); start(); }
    });
    if (!document.hidden) { start(); }
  }

  function selectAll(box) {
    var name = box.getAttribute("data-select-all");
    box.addEventListener("change", function () {
      var form = box.form;
      if (!form) { return; }
      var boxes = form.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
      for (var i = 0; i < boxes.length; i++) { boxes[i].checked = box.checked; }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.querySelectorAll("[data-refresh]");
    for (var i = 0; i < live.length; i++) { poll(live[i]); }
    var all = document.querySelectorAll("[data-select-all]");
    for (var j = 0; j < all.length; j++) { selectAll(all[j]); }
  });
})();
