// Applies the theme chosen with the ◐ button before the first paint; without a choice the
// operating system's preference applies (color-scheme: light dark).
(function () {
  try {
    var t = localStorage.getItem("tw-theme");
    if (t === "light" || t === "dark") document.documentElement.dataset.theme = t;
  } catch (e) { /* storage blocked: follow the OS */ }
})();
