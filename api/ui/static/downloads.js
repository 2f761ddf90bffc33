import { call } from "./api.js";
import { $, confirm, h, say, show } from "./dom.js";
import { bytes, duration, rate, statusText } from "./format.js";

const cards = new Map();   // job_id -> {el, update}
const RUNNING = ["queued", "downloading", "verifying"];
const MAX_SHOWN = 30;

const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

export function initDownloads() {
  $("#dl-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target.elements;
    const body = { model_id: f.model_id.value.trim(), activate: f.activate.checked };
    if (f.revision.value.trim()) body.revision = f.revision.value.trim();
    if (f.include.value.trim()) body.include = list(f.include.value);
    if (f.exclude.value.trim()) body.exclude = list(f.exclude.value);
    if (f.max_bps.value.trim()) body.max_bps = f.max_bps.value.trim();
    const msg = $("#dl-message");
    say(msg, "Starting…");
    try {
      const job = await call("POST", "/api/download-model", { body });
      onJob(job);
      say(msg, `Queued ${job.model_id} (job ${job.job_id}).`, "ok");
      f.model_id.value = "";
    } catch (err) {
      say(msg, `✖ ${err.message}`, "error");
    }
  });
}

export function clearDownloads() {
  cards.clear();
  $("#dl-list").replaceChildren();
  show($("#dl-empty"), true);
}

export function onJob(job) {
  if (job.kind !== "download") return;
  let card = cards.get(job.job_id);
  if (!card) {
    card = makeCard(job);
    cards.set(job.job_id, card);
    $("#dl-list").prepend(card.el);
    while (cards.size > MAX_SHOWN) {
      const [oldest] = cards.keys();
      cards.get(oldest).el.remove();
      cards.delete(oldest);
    }
  }
  card.update(job);
  show($("#dl-empty"), cards.size === 0);
}

async function act(job, action, query) {
  return call("POST", `/api/jobs/${job.job_id}/${action}`, { query });
}

function makeCard(first) {
  let job = first;
  const name = `${first.model_id}${first.revision && first.revision !== "main" ? "@" + first.revision : ""}`;
  const status = h("span.badge", { role: "status" });
  const throttled = h("span.badge.throttled", { text: "◔ Throttled by the bandwidth limit", hidden: true });
  const bar = h("progress", { max: 100, value: 0, "aria-label": `Progress of ${name}` });
  const pct = h("span.pct");
  const meta = h("p.meta");
  const error = h("p.error", { hidden: true });
  const note = h("p.muted", { hidden: true });
  const run = (action, query) => async () => {
    say(error, "");
    try {
      onJob(await act(job, action, query));
    } catch (err) {
      say(error, `✖ ${err.message}`, "error");
      show(error, true);
    }
  };
  const pause = h("button.small", { type: "button", text: "‖ Pause", onclick: run("pause") });
  const resume = h("button.small", { type: "button", text: "▶ Resume", onclick: run("resume") });
  const cancel = h("button.small.secondary", {
    type: "button", text: "⊘ Cancel",
    onclick: async () => {
      const answer = await confirm({
        title: `Cancel the download of ${name}?`,
        text: "Bytes already downloaded are kept, so it can resume later, unless you discard them.",
        yes: "Cancel download", no: "Keep downloading",
        check: "Also discard the partial bytes (cannot be undone)",
      });
      if (answer.ok) await run("cancel", { discard: answer.checked ? "true" : "false" })();
    },
  });
  const el = h("li.job", { "data-job": first.job_id, "aria-label": `Download ${name}` },
    h("div.row", {}, h("strong.name", { text: name }), status, throttled),
    h("div.bar", {}, bar, pct), meta, note, error,
    h("div.actions", {}, pause, resume, cancel));

  function update(j) {
    job = j;
    el.dataset.status = j.status;
    status.textContent = statusText(j.status);
    show(throttled, !!j.throttled);
    bar.value = j.progress;
    pct.textContent = `${j.progress}%`;
    const parts = [`${bytes(j.bytes_downloaded)} of ${bytes(j.bytes_total)}`];
    if (j.status === "downloading") parts.push(`${bytes(j.speed_bps)}/s`, `ETA ${duration(j.eta_seconds)}`);
    parts.push(`files ${j.files_done}/${j.files_total}`);
    if (j.max_bps) parts.push(`job limit ${rate(j.max_bps)}`);
    meta.textContent = parts.join(" · ");
    const r = j.result || {};
    const notes = [];
    if (r.discarded) notes.push(`Partial bytes discarded (${bytes(r.freed_bytes)} freed).`);
    if (r.switch_job_id) notes.push("Switch to this model started.");
    note.textContent = notes.join(" ");
    show(note, notes.length > 0);
    if (j.error) { say(error, `✖ ${j.error}`, "error"); show(error, true); } else if (!error.textContent) show(error, false);
    show(pause, RUNNING.includes(j.status));
    show(resume, ["paused", "failed", "cancelled"].includes(j.status));
    show(cancel, RUNNING.includes(j.status) || j.status === "paused");
  }
  return { el, update };
}
