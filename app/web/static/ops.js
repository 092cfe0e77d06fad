// Re-fetch the page every few seconds and swap the #live block. Jinja rendered (and escaped) it on
// the server; DOMParser never runs scripts, and nothing here builds HTML from strings.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch || !window.DOMParser) { return; }
  var every = parseInt(live.getAttribute("data-refresh-ms"), 10) || 5000;
  function mark(text, stale) {
    var s = document.getElementById("refresh-status");
    if (s) { s.textContent = text; s.className = stale ? "stale" : ""; }
  }
  function tick() {
    fetch(window.location.pathname + window.location.search, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("live");
        var current = document.getElementById("live");
        if (fresh && current) { current.replaceWith(document.importNode(fresh, true)); }
      })
      .catch(function (err) { mark("(refresh failed: " + err.message + ")", true); })
      .then(function () { window.setTimeout(tick, every); });
  }
  window.setTimeout(tick, every);
}());
