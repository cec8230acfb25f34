// The workers page: every worker's host, device, queues, current run and last heartbeat.

import { clearError, formatTimestamp, getJson, showError } from "/static/api.js";

const REFRESH_MS = 5000;

const byId = (id) => document.getElementById(id);

function cell(content) {
  const td = document.createElement("td");
  td.append(content);
  return td;
}

function runCell(run) {
  if (!run) {
    return cell("idle");
  }
  const progress = `step ${run.step} of ${run.steps}`;
  if (run.id === null) {
    // The run belongs to someone else's private study.
    return cell(`a private run, ${progress}`);
  }
  const link = document.createElement("a");
  link.href = `/studies/${run.study_id}`;
  link.textContent = `run ${run.id} of ${run.study_name}`;
  const td = cell(link);
  td.append(`, ${progress}`);
  return td;
}

function heartbeatCell(worker) {
  const td = cell(formatTimestamp(worker.last_heartbeat_at));
  if (!worker.alive) {
    const note = document.createElement("strong");
    note.textContent = " (not heard from: stopped or unreachable)";
    td.append(note);
  }
  return td;
}

function render(body) {
  const rows = body.workers.map((worker) => {
    const row = document.createElement("tr");
    row.dataset.testid = "worker";
    row.dataset.alive = String(worker.alive);
    row.append(
      cell(worker.host),
      cell(worker.name),
      cell(worker.device),
      cell(worker.queues.join(", ")),
      runCell(worker.run),
      heartbeatCell(worker),
    );
    return row;
  });
  byId("workers-rows").replaceChildren(...rows);
  document.querySelector(".workers-table").hidden = rows.length === 0;
  byId("workers-empty").hidden = rows.length !== 0;
  byId("workers-devices").textContent = body.devices.length
    ? `New runs can ask for: ${body.devices.join(", ")}.`
    : "No live worker: new runs wait in their queue until one starts.";
}

async function refresh() {
  const error = byId("workers-error");
  try {
    render(await getJson("/api/workers"));
    clearError(error);
  } catch (problem) {
    showError(error, problem);
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
