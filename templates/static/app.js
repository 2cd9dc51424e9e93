// jitgate web UI: live updates. Listens to the change stream and, when a request shown
// on this page changes, refreshes the page's content in place. If the person is typing
// a reason, it does not throw their words away: it shows a "reload" notice instead.
(function () {
  "use strict";
  var watch = document.body.getAttribute("data-watch") || "";
  if (!watch || typeof EventSource === "undefined") return;
  var busy = false, again = false;

  function typing() {
    var fields = document.querySelectorAll("#live textarea, #live input[type=text]");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value) return true;
    }
    return false;
  }

  function refresh() {
    if (typing()) {
      document.getElementById("stale").hidden = false;
      return;
    }
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (!r.ok || r.redirected) throw new Error("reload");
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        var live = document.getElementById("live");
        if (!fresh || !live) throw new Error("reload");
        live.replaceWith(document.adoptNode(fresh));
        document.body.setAttribute("data-version", String(Date.now()));
      })
      .catch(function () { window.location.reload(); })
      .finally(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  var events = new EventSource("/ui/events");
  events.addEventListener("change", function (e) {
    var c;
    try { c = JSON.parse(e.data); } catch (_) { return; }
    if (watch === "all" || c.id === watch) refresh();
  });
  events.addEventListener("lagged", refresh);
  // A change between this page being rendered and the stream opening (or while it was
  // reconnecting) would be missed: re-read once each time the stream (re)opens.
  events.addEventListener("open", refresh);
})();
