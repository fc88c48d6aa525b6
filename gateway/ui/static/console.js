// Foldflow console: keyboard shortcuts and the JSON editor of signals (no inline script).
(function () {
  "use strict";
  let pending = null; // the first key of a two-key shortcut ("g")

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  function rowLinks() {
    return Array.from(document.querySelectorAll("main table a.row-link"));
  }

  function moveRow(step) {
    const links = rowLinks();
    if (!links.length) return;
    const at = links.indexOf(document.activeElement);
    const next = at < 0 ? (step > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, at + step));
    links[next].focus();
  }

  const jumps = { w: "/ui/workflows", d: "/ui/definitions", l: "/ui/dlq" };

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (pending === "g" && jumps[event.key]) {
      pending = null;
      event.preventDefault();
      window.location.assign(jumps[event.key]);
      return;
    }
    pending = null;
    if (event.key === "/") {
      const search = document.getElementById("search");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
    } else if (event.key === "j") {
      moveRow(1);
    } else if (event.key === "k") {
      moveRow(-1);
    } else if (event.key === "g") {
      pending = "g";
    }
  });

  // The signal's data must be JSON: say so while typing, and refuse to send it otherwise.
  function checkJson(area) {
    const message = document.getElementById(area.getAttribute("aria-describedby"));
    const button = area.form && area.form.querySelector("button[type=submit]");
    let problem = "";
    if (area.value.trim()) {
      try { JSON.parse(area.value); } catch (error) { problem = "Not JSON: " + error.message; }
    }
    area.setAttribute("aria-invalid", problem ? "true" : "false");
    if (message) message.textContent = problem;
    if (button) button.disabled = Boolean(problem);
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("textarea[data-json-editor]")) checkJson(event.target);
  });

  // Send a form's flash into view for screen readers and keyboard users alike.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail && event.detail.target && event.detail.target.id === "flash") {
      event.detail.target.scrollIntoView({ block: "nearest" });
    }
  });
})();
