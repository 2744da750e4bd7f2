// Conveniences only: the page works without this script.
// - suggestions while typing (the <datalist> of the search box)
// - "/" focuses the search box
(function () {
  "use strict";
  var box = document.getElementById("q");
  var list = document.getElementById("suggestions");
  if (!box || !list) return;
  var timer = null;
  var last = "";
  var pending = null;

  function fill(words) {
    while (list.firstChild) list.removeChild(list.firstChild);
    words.forEach(function (w) {
      var opt = document.createElement("option");
      opt.value = w;
      list.appendChild(opt);
    });
  }

  function ask() {
    var text = box.value;
    if (!text.trim() || text === last) return;
    last = text;
    if (pending && pending.abort) pending.abort();
    pending = window.AbortController ? new AbortController() : null;
    fetch("/api/suggest?q=" + encodeURIComponent(text), pending ? { signal: pending.signal } : {})
      .then(function (r) { return r.ok ? r.json() : { suggestions: [] }; })
      .then(function (data) { if (box.value === text) fill(data.suggestions || []); })
      .catch(function () {});
  }

  box.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(ask, 150);
  });

  document.addEventListener("keydown", function (e) {
    var t = e.target;
    var typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
    if (e.key === "/" && !typing && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      box.focus();
      box.select();
    }
  });
})();
