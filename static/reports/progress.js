// Live progress on a report's page: polls the report's JSON status every second, moves the bar,
// updates the status (announced by its aria-live region only when it changes), and reloads the page
// once the build has finished, so the server renders the download links or the error.
// Without JavaScript the page still works: its "Refresh" link reloads it by hand.
(() => {
  "use strict";

  const POLL_MS = 1000;
  const RETRY_MS = 5000;

  const section = document.querySelector("[data-status-url]");
  if (!section) return;
  const bar = section.querySelector("progress");
  const percent = section.querySelector("[data-percent]");
  const status = section.querySelector("[data-status]");
  const cancelForm = section.querySelector("[data-cancel-form]");
  const refresh = section.querySelector("[data-refresh]");
  if (refresh) refresh.hidden = true; // the page refreshes itself

  function show(report) {
    bar.value = report.progress;
    bar.textContent = `${report.progress}%`;
    percent.textContent = `${report.progress}%`;
    if (status.textContent !== report.label) status.textContent = report.label;
    status.className = `report-status ${report.status}`;
    if (cancelForm && !report.cancellable) cancelForm.hidden = true;
  }

  async function poll() {
    try {
      const response = await fetch(section.dataset.statusUrl, {
        headers: { Accept: "application/json" },
        cache: "no-store",
      });
      if (!response.ok) throw new Error(`status ${response.status}`);
      const report = await response.json();
      show(report);
      if (report.finished) {
        window.location.reload();
        return;
      }
      setTimeout(poll, POLL_MS);
    } catch {
      // Offline, or signed out: offer the manual refresh, and try again a little later.
      if (refresh) refresh.hidden = false;
      setTimeout(poll, RETRY_MS);
    }
  }

  setTimeout(poll, POLL_MS);
})();
