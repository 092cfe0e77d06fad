// The trends section: re-fetched once a minute (snapshots are per minute) and swapped whole; the
// server built and escaped it, DOMParser never runs scripts, nothing here builds HTML from strings.
// Choosing an application in the selector shows it at once (the form still works without this).
(function () {
  "use strict";
  var section = document.getElementById("trends");
  if (!section || !window.fetch || !window.DOMParser) { return; }
  var every = parseInt(section.getAttribute("data-refresh-ms"), 10) || 60000;
  function wire() {
    var select = document.getElementById("trend-pair");
    if (select && select.form) {
      select.addEventListener("change", function () { select.form.submit(); });
      var button = select.form.querySelector("button");
      if (button) { button.hidden = true; }
    }
  }
  function tick() {
    fetch(window.location.pathname.replace(/\/ops\/?$/, "/ops/trends") + window.location.search,
          { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("trends");
        var current = document.getElementById("trends");
        if (fresh && current) { current.replaceWith(document.importNode(fresh, true)); wire(); }
      })
      .catch(function () { /* the next tick tries again; the page's own status line shows outages */ })
      .then(function () { window.setTimeout(tick, every); });
  }
  wire();
  window.setTimeout(tick, every);
}());
