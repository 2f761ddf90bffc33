import { call } from "./api.js";
import { $, confirm, h, say, show } from "./dom.js";
import { statusText } from "./format.js";

const STEPS = {
  env_rewritten: "DEFAULT_MODEL written to .env",
  old_stopped: "Old container stopped",
  new_started: "New container started",
  new_healthy: "New container healthy",
  backup_removed: "Old container removed",
  done: "Done",
  env_restored: ".env restored",
  rolled_back: "Rolled back to the previous model",
  inspected: "Old container inspected",
  old_renamed: "Old container kept as a backup",
  new_created: "New container created",
  network_connected: "New container connected to its network",
  failed: "New container failed",
  backup_remove_failed: "Could not remove the backup container",
  rollback_new_removed: "New container removed",
  rollback_renamed: "Old container renamed back",
  rollback_started: "Old container started again",
  rollback_ready: "Old container ready",
};
let container = null;
let latestSwitch = null;

export async function refreshActive() {
  const [active, models] = await Promise.all([call("GET", "/api/active-model"), call("GET", "/api/models")]);
  const variant = active.variant ? `:${active.variant}` : "";   // a GGUF variant, as vLLM is given it
  $("#active-model").textContent = active.model_id ? active.model_id + variant : "(none)";
  container = active.container;
  const c = container;
  $("#active-container").textContent = c
    ? `Container ${c.name}: ${c.status === "running" ? "✔" : "✖"} ${c.status} · health: ${c.health}`
    : "Container: not found (or Docker unavailable)";
  $("#switch-list").replaceChildren(...models.filter((m) => m.status === "complete").map((m) => {
    const btn = h("button.small", {
      type: "button", text: m.active ? "★ Active now" : "Switch to this model", disabled: m.active,
      onclick: () => switchTo(m.model_id),
    });
    return h("li", { "data-model": m.model_id }, h("span", { text: m.model_id }), btn);
  }));
  await refreshLogs();
}

export async function refreshLogs() {
  if (!container) { $("#logs").textContent = "(no container)"; return; }
  try {
    const r = await call("GET", `/api/containers/${encodeURIComponent(container.name)}/logs`, { query: { tail: 60 } });
    $("#logs").textContent = r.lines.join("\n") || "(empty)";
  } catch (err) {
    $("#logs").textContent = `✖ ${err.message}`;
  }
}

async function switchTo(model) {
  const answer = await confirm({
    title: `Switch to ${model}?`,
    text: "The inference container is recreated with this model; it answers no requests until it is healthy. "
        + "If it never gets healthy, the previous model comes back.",
    yes: "Switch", no: "Not now",
  });
  if (!answer.ok) return;
  try {
    onJob(await call("PUT", "/api/active-model", { body: { model_id: model } }));
  } catch (err) {
    show($("#switch-progress"), true);
    say($("#switch-error"), `✖ ${err.message}`, "error");
    show($("#switch-error"), true);
  }
}

// The newest switch job, whoever started it (this page, modelctl, N8n), with its steps as they happen.
export function onJob(job, refresh) {
  if (job.kind !== "switch") return;
  if (latestSwitch && job.created_at < latestSwitch.created_at) return;
  const wasRunning = latestSwitch && latestSwitch.job_id === job.job_id && !isFinal(latestSwitch.status);
  latestSwitch = job;
  show($("#switch-progress"), true);
  $("#switch-title").textContent = `Switch to ${job.model_id}: ${statusText(job.status)}`;
  const steps = (job.result && job.result.steps) || [];
  $("#switch-steps").replaceChildren(...steps.map((s) => h("li", {
    text: `${icon(s.step)} ${STEPS[s.step] || s.step.replace(/_/g, " ")} (${s.at_seconds}s)`,
  })));
  if (!isFinal(job.status)) $("#switch-steps").append(h("li.muted", { text: "… working" }));
  say($("#switch-error"), job.error ? `✖ ${job.error}` : "", "error");
  show($("#switch-error"), !!job.error);
  if (wasRunning && isFinal(job.status) && refresh) refresh();
}

const icon = (step) => (step.includes("failed") ? "✖" : step.startsWith("roll") || step === "env_restored" ? "↻" : "✔");
const isFinal = (s) => ["complete", "failed", "cancelled"].includes(s);
