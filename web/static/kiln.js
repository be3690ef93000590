// Kiln's dashboard: follows a run and a job's log through server-sent
// events. Pages work without it; it only keeps them current.
"use strict";

function statusBadge(cell, status) {
  const span = document.createElement("span");
  span.className = "status s-" + status;
  span.textContent = status;
  cell.replaceChildren(span);
}

function followRun(root) {
  const src = new EventSource(root.dataset.follow);
  src.addEventListener("run", (e) => {
    const run = JSON.parse(e.data);
    statusBadge(document.getElementById("run-status"), run.status);
    document.getElementById("run-took").textContent = run.took;
    document.getElementById("run-reason").textContent = run.reason || "-";
    for (const job of run.jobs) {
      const node = document.querySelector('#graph g[data-job="' + CSS.escape(job.name) + '"]');
      if (node) {
        node.setAttribute("class", "node s-" + job.status);
        node.querySelector("text.state").textContent = job.status;
        node.querySelector("title").textContent = job.name + ": " + job.status;
      }
      const row = document.querySelector('#jobs tr[data-job="' + CSS.escape(job.name) + '"]');
      if (row) {
        statusBadge(row.querySelector(".c-status"), job.status);
        row.querySelector(".c-worker").textContent = job.worker || "-";
        row.querySelector(".c-attempts").textContent = job.attempts;
        row.querySelector(".c-took").textContent = job.took;
        row.querySelector(".c-note").textContent = job.waiting || job.error;
      }
    }
    if (run.final) {
      src.close();
      const cancel = document.getElementById("cancel-form");
      if (cancel) cancel.remove();
    }
  });
  src.addEventListener("gone", () => src.close());
}

function followLog(pre) {
  const state = document.getElementById("log-state");
  const src = new EventSource(pre.dataset.log);
  state.textContent = "following the log as it is written";
  src.addEventListener("log", (e) => {
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    // The server escaped the text and turned colours into spans.
    pre.insertAdjacentHTML("beforeend", e.data);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  });
  src.addEventListener("end", (e) => {
    pre.insertAdjacentHTML("beforeend", e.data);
    state.textContent = "end of the log";
    src.close();
  });
  src.addEventListener("gone", (e) => {
    state.textContent = "the log stopped: " + e.data;
    src.close();
  });
  // A reconnect would send the log again from its start.
  src.onerror = () => {
    if (src.readyState === EventSource.CLOSED) return;
    src.close();
    state.textContent = "disconnected from the master: reload the page to read on";
  };
}

document.addEventListener("DOMContentLoaded", () => {
  const run = document.querySelector("#run[data-follow]");
  if (run) followRun(run);
  const log = document.querySelector("pre[data-log]");
  if (log) followLog(log);
});
