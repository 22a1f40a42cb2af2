// trailwarden UI: comfort only. Every page works without this file.
(function () {
  "use strict";

  // Local time on hover of every UTC time.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) t.title = d.toLocaleString() + " (local time)";
    });
  }

  // The ◐ button: light → dark → the OS's choice.
  function themeButton() {
    var b = document.getElementById("theme");
    if (!b) return;
    b.addEventListener("click", function () {
      var root = document.documentElement;
      var dark = root.dataset.theme
        ? root.dataset.theme === "dark"
        : window.matchMedia("(prefers-color-scheme: dark)").matches;
      var next = dark ? "light" : "dark";
      root.dataset.theme = next;
      try { localStorage.setItem("tw-theme", next); } catch (e) { /* ignore */ }
    });
  }

  // Tables with class "sortable": a button in each header sorts by that column (aria-sort says
  // how). Cells may carry data-sort with the value to sort by.
  function sortable(table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, col) {
      if (!th.textContent.trim()) return;
      var b = document.createElement("button");
      b.type = "button";
      b.className = "sort";
      while (th.firstChild) b.appendChild(th.firstChild);
      th.appendChild(b);
      th.setAttribute("aria-sort", "none");
      b.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        heads.forEach(function (h) { h.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var key = function (r) {
          var c = r.cells[col];
          if (!c) return "";
          var v = c.getAttribute("data-sort");
          if (v === null) {
            var t = c.querySelector("time[datetime]");
            v = t ? t.getAttribute("datetime") : c.textContent.trim();
          }
          var n = Number(v);
          return v !== "" && !isNaN(n) ? n : v.toLowerCase();
        };
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          var o = x < y ? -1 : x > y ? 1 : 0;
          return asc ? o : -o;
        });
        rows.forEach(function (r) { body.appendChild(r); });
        b.focus();
      });
    });
  }

  // The search editor: Ctrl+Enter (or Shift+Enter) runs; the custom range shows its fields.
  function editor() {
    var q = document.getElementById("q");
    if (!q) return;
    q.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey || e.shiftKey)) {
        e.preventDefault();
        q.form.requestSubmit();
      }
    });
    var range = document.getElementById("range");
    var custom = q.form.querySelectorAll("input[type=datetime-local]");
    function show() {
      custom.forEach(function (i) { i.parentElement.hidden = range.value !== "custom"; });
    }
    if (range) { range.addEventListener("change", show); show(); }
    // a click on a table's name puts it in the editor
    document.querySelectorAll("code.tbl").forEach(function (c) {
      c.addEventListener("dblclick", function () {
        if (!q.value.trim()) { q.value = c.textContent + "\n| take 100"; q.focus(); }
      });
    });
  }

  // Forms with data-confirm ask first (revoking a token); a "no" stops the post.
  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) {
        if (!window.confirm(f.getAttribute("data-confirm"))) {
          e.preventDefault();
          e.stopImmediatePropagation();
        }
      });
    });
  }

  // Forms: a second click while the first is on its way does not post twice.
  function onceForms() {
    document.querySelectorAll("form[method=post]").forEach(function (f) {
      f.addEventListener("submit", function () {
        var b = f.querySelector("button[type=submit]");
        if (b) { setTimeout(function () { b.disabled = true; }, 0); f.setAttribute("aria-busy", "true"); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    themeButton();
    document.querySelectorAll("table.sortable").forEach(sortable);
    editor();
    confirmForms();
    onceForms();
  });
})();
