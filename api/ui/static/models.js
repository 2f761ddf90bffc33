import { call } from "./api.js";
import { $, confirm, h, say, show } from "./dom.js";
import { bytes, when } from "./format.js";

const verifyJobs = new Map();   // verify job_id -> model_id
const verifyText = new Map();   // model_id -> [text, kind]
const STATE = { complete: "✔ Complete", partial: "◐ Incomplete", downloading: "⬇ Downloading" };

export async function refreshModels() {
  const [models, disk] = await Promise.all([call("GET", "/api/models"), call("GET", "/api/disk")]);
  renderDisk(disk);
  const body = $("#models-table tbody");
  body.replaceChildren(...models.map(row));
  show($("#models-empty"), models.length === 0);
  return models;
}

function renderDisk(d) {
  const used = d.total_bytes - d.free_bytes;
  const reserve = d.reserve_bytes || 0;
  $("#disk").replaceChildren(
    h("div.row", {},
      h("span", { text: `Cache: ${bytes(d.cache_bytes)}` }),
      h("span", { text: `Disk used: ${bytes(used)} of ${bytes(d.total_bytes)}` }),
      h("span", { text: `Free: ${bytes(d.free_bytes)}` }),
      h("span", { text: `Reserve kept free: ${bytes(reserve)}` })),
    h("meter", { min: 0, max: d.total_bytes, value: used, low: Math.max(0, d.total_bytes * 0.7),
                 high: Math.max(0, d.total_bytes - reserve), optimum: 0, "aria-label": "Disk used" }));
}

function row(m) {
  const result = h("span.verify", { role: "status" });
  const [text, kind] = verifyText.get(m.model_id) || ["", ""];
  say(result, text, `verify ${kind}`);
  const verify = h("button.small", {
    type: "button", text: "Verify", disabled: m.status !== "complete",
    onclick: async () => {
      setVerify(m.model_id, "⟳ Verifying…", "");
      refreshResult();
      try {
        const job = await call("POST", "/api/models/verify", { body: { model_id: m.model_id } });
        verifyJobs.set(job.job_id, m.model_id);
        onJob(job);
      } catch (err) {
        setVerify(m.model_id, `✖ ${err.message}`, "error");
        refreshResult();
      }
    },
  });
  const reasonId = `why-${m.model_id.replace(/[^A-Za-z0-9]/g, "-")}`;
  const del = h("button.small.danger", {
    type: "button", text: "Delete", disabled: m.active,
    "aria-describedby": m.active ? reasonId : null,
    onclick: async () => {
      const answer = await confirm({
        title: `Delete ${m.model_id}?`, text: `Its files (${bytes(m.size_bytes)}) are removed from the cache.`,
        yes: "Delete", no: "Keep",
      });
      if (!answer.ok) return;
      try {
        const r = await call("DELETE", "/api/delete-model", { query: { model_id: m.model_id } });
        say($("#models-message"), `✔ ${r.message}`, "ok");
      } catch (err) {
        say($("#models-message"), `✖ ${err.message}`, "error");
      }
      refreshModels().catch(() => {});
    },
  });
  const why = m.active ? h("span.muted.why", { id: reasonId, text: "Active model: switch to another before deleting" }) : null;
  function refreshResult() {
    const [t, k] = verifyText.get(m.model_id) || ["", ""];
    say(result, t, `verify ${k}`);
  }
  return h("tr", { "data-model": m.model_id },
    h("th", { scope: "row" }, h("span", { text: m.model_id }), m.active ? h("span.tag", { text: "★ Active" }) : null),
    h("td", { text: STATE[m.status] || m.status }),
    h("td", { text: bytes(m.size_bytes) }),
    h("td", { text: String(m.files) }),
    h("td", { text: when(m.last_modified) }),
    h("td", {}, h("div.actions", {}, verify, del, why, result)));
}

function setVerify(model, text, kind) { verifyText.set(model, [text, kind]); }

export function onJob(job) {
  if (job.kind !== "verify" || !verifyJobs.has(job.job_id)) return;
  const model = verifyJobs.get(job.job_id);
  const r = job.result || {};
  if (job.status === "complete") setVerify(model, `✔ Verified: ${r.files_checked} files match their checksums`, "ok");
  else if (job.status === "failed") setVerify(model, `✖ ${job.error || "Verification failed"}`, "error");
  else setVerify(model, `⟳ Verifying… ${job.progress}%`, "");
  const cell = document.querySelector(`tr[data-model="${CSS.escape(model)}"] .verify`);
  if (cell) say(cell, ...verifyText.get(model).map((v, i) => (i ? `verify ${v}` : v)));
}
