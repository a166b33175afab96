// The dashboard's live updates. Every data-refresh-ms, the script's data-url (/api/live)
// fills the elements marked data-live-experiment / data-field, the progress bars and the
// workers table: text only, never markup. Its settings come from its own <script> tag's
// data- attributes, as the Content-Security-Policy runs no inline script.
(function () {
  "use strict";
  const own = document.currentScript.dataset;
  const url = own.url;
  const refreshMs = Number(own.refreshMs);
  const watchEstimate = JSON.parse(own.watchEstimate);
  const shownEstimate = JSON.parse(own.estimateTrials);
  const status = document.getElementById("live-status");

  function fill(record) {
    const selector = '[data-live-experiment="' + CSS.escape(record.experiment) + '"]';
    document.querySelectorAll(selector).forEach(function (box) {
      box.querySelectorAll("[data-field]").forEach(function (el) {
        const value = record[el.dataset.field];
        el.textContent = value === null || value === undefined ? "" : String(value);
      });
      box.querySelectorAll("progress.bar").forEach(function (el) {
        el.value = record.fraction;
        el.textContent = (100 * record.fraction).toFixed(0) + "%";
      });
    });
  }

  function workers(rows) {
    const body = document.getElementById("workers-body");
    if (!body) return;
    body.replaceChildren();
    rows.forEach(function (w) {
      const tr = document.createElement("tr");
      ["worker", "last_seen", "stored", "current", "since"].forEach(function (key) {
        const td = document.createElement("td");
        td.textContent = String(w[key]);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  async function tick() {
    try {
      const response = await fetch(url, {cache: "no-store"});
      if (!response.ok) throw new Error(response.status + " " + response.statusText);
      const data = await response.json();
      data.experiments.forEach(fill);
      workers(data.workers);
      if (watchEstimate && data.experiments.length &&
          data.experiments[0].last_estimate_trials !== shownEstimate) {
        location.reload();  // a newer estimate: redraw the figures
        return;
      }
      status.textContent = "live, updated " + new Date().toLocaleTimeString();
      status.classList.remove("stale");
    } catch (error) {
      status.textContent = "cannot reach the dashboard (" + error.message + "); retrying";
      status.classList.add("stale");
    }
    setTimeout(tick, refreshMs);
  }
  setTimeout(tick, refreshMs);
})();
