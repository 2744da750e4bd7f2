// Conveniences only: the page works without this script (the form, links
// and the server-rendered pages do everything).
// - results while typing: the page the form would open is fetched and its
//   <main> shown in place, the address kept current (replaceState); a newer
//   keystroke cancels the request in flight
// - suggestions while typing (the <datalist> of the search box)
// - a sort change applies at once
// - the home page's search box has focus before the page counts as loaded
// - "/" focuses the search box; j/k (or the arrow keys on a result) move
//   through the results
// - on a narrow screen, the filters wait behind the 筛选 button
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var box = document.getElementById("q");
  var list = document.getElementById("suggestions");
  var main = document.getElementById("main");
  var live = document.getElementById("live");
  if (!box || !list || !main) return;
  var form = box.form;
  var sort = document.getElementById("sort");
  // Typing pauses this long before a request: each keystroke of a word typed
  // at speed would otherwise start a search only to cancel it.
  var DEBOUNCE_MS = 100;
  var timer = null;
  var lastSuggested = "";
  var suggesting = null;
  var searching = null;
  var shown = location.pathname + location.search;

  // The browser applies autofocus at its next rendering step, which may come
  // after the load event: keys typed in between went to the page and the
  // first letters of a query were lost. Focusing here (a deferred script runs
  // before DOMContentLoaded) has the box ready before the page counts as
  // loaded, unless the reader has already moved elsewhere.
  if (box.hasAttribute("autofocus") && (!document.activeElement || document.activeElement === document.body)) {
    box.focus();
  }

  function fill(words) {
    while (list.firstChild) list.removeChild(list.firstChild);
    words.forEach(function (w) {
      var opt = document.createElement("option");
      opt.value = w;
      list.appendChild(opt);
    });
  }

  function suggest() {
    var text = box.value;
    if (!text.trim() || text === lastSuggested) return;
    lastSuggested = text;
    if (suggesting) suggesting.abort();
    suggesting = new AbortController();
    fetch("/api/suggest?q=" + encodeURIComponent(text), { signal: suggesting.signal })
      .then(function (r) { return r.ok ? r.json() : { suggestions: [] }; })
      .then(function (data) { if (box.value === text) fill(data.suggestions || []); })
      .catch(function () {});
  }

  // The address the form would open (its hidden filters and sort included).
  function formUrl() {
    var params = new URLSearchParams(new FormData(form));
    return (form.getAttribute("action") || "/") + "?" + params.toString();
  }

  function hasFilters() {
    return form.querySelector("input[type=hidden]") !== null;
  }

  function refresh() {
    var text = box.value;
    // An empty box with no filter is the home page: the form would not be sent.
    if (!text.trim() && !hasFilters()) return;
    var url = formUrl();
    if (url === shown) return;
    if (searching) searching.abort();
    var mine = new AbortController();
    searching = mine;
    fetch(url, { signal: mine.signal, headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (r) {
        // 400 is a page too: the query the parser cannot read, said in words.
        if (!r.ok && r.status !== 400) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        if (searching === mine) show(url, html, text);
      })
      .catch(function () {});
  }

  // The server's page, parsed (never executed: scripts in it do not run, and
  // every word in it was escaped by the server), replaces our <main>.
  function show(url, html, text) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById("main");
    if (!fresh) return;
    main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes));
    document.title = doc.title;
    history.replaceState(null, "", url);
    shown = url;
    searching = null;
    var summary = document.getElementById("summary");
    if (live && summary) live.textContent = summary.textContent.replace(/\s+/g, " ").trim();
    document.dispatchEvent(new CustomEvent("zhsearch:results", { detail: { url: url, q: text } }));
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      suggest();
      refresh();
    }, DEBOUNCE_MS);
  }

  box.addEventListener("input", function (e) {
    if (!e.isComposing) schedule(); // an input method's unfinished syllables are not a query
  });
  box.addEventListener("compositionend", schedule);

  // Enter, and the form without this script, work as they always have.
  form.addEventListener("submit", function () {
    clearTimeout(timer);
    if (searching) searching.abort();
  });

  if (sort) {
    sort.addEventListener("change", function () {
      clearTimeout(timer);
      if (box.value.trim() || hasFilters()) refresh();
    });
  }

  document.addEventListener("click", function (e) {
    var toggle = e.target.closest && e.target.closest(".filters-toggle");
    if (!toggle) return;
    var panel = document.getElementById(toggle.getAttribute("aria-controls"));
    if (!panel) return;
    var open = !panel.classList.contains("open");
    panel.classList.toggle("open", open);
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) panel.focus({ preventScroll: true });
  });

  function resultLinks() {
    return Array.prototype.slice.call(main.querySelectorAll("li.hit h2 a"));
  }

  // Focus the next (step 1) or previous (-1) result's title; false when the
  // key is better left to the browser.
  function move(step, onlyWithin) {
    var links = resultLinks();
    if (!links.length) return false;
    var at = -1;
    links.forEach(function (a, i) {
      if (a.closest("li.hit").contains(document.activeElement)) at = i;
    });
    if (at < 0 && onlyWithin) return false;
    var next = at < 0 ? (step > 0 ? 0 : links.length - 1) : Math.max(0, Math.min(links.length - 1, at + step));
    links.forEach(function (a, i) { a.closest("li.hit").classList.toggle("current", i === next); });
    links[next].focus();
    links[next].scrollIntoView({ block: "nearest" });
    return true;
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    var typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
    if (typing) return;
    var handled = false;
    if (e.key === "/") {
      box.focus();
      box.select();
      handled = true;
    } else if (e.key === "j") {
      handled = move(1, false);
    } else if (e.key === "k") {
      handled = move(-1, false);
    } else if (e.key === "ArrowDown") {
      handled = move(1, true); // elsewhere the arrows scroll the page
    } else if (e.key === "ArrowUp") {
      handled = move(-1, true);
    }
    if (handled) e.preventDefault();
  });
})();
