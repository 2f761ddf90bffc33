import { call } from "./api.js";
import { $, say } from "./dom.js";
import { when } from "./format.js";

let dirty = false;

export function initLimits() {
  const form = $("#limits-form");
  form.addEventListener("input", () => { dirty = true; });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = form.elements;
    const msg = $("#limits-message");
    try {
      const l = await call("PUT", "/api/limits", {
        body: { bandwidth_bps: f.bandwidth.value.trim() || 0, max_concurrent_downloads: Number(f.max_concurrent_downloads.value) },
      });
      dirty = false;
      onLimits(l);
      say(msg, `✔ Saved: ${l.bandwidth}, ${l.max_concurrent_downloads} at a time.`, "ok");
    } catch (err) {
      say(msg, `✖ ${err.message}`, "error");
    }
  });
}

export function onLimits(l) {
  $("#limit-bw").textContent = l.bandwidth;
  $("#limit-conc").textContent = String(l.max_concurrent_downloads);
  $("#limit-source").textContent = l.source === "api"
    ? `Set from the API on ${when(l.updated_at)}; kept across restarts.`
    : "From the service settings (BANDWIDTH_LIMIT, MAX_CONCURRENT_DOWNLOADS).";
  if (!dirty) {
    const f = $("#limits-form").elements;
    f.bandwidth.value = l.bandwidth_bps ? l.bandwidth.replace(" ", "") : "";
    f.max_concurrent_downloads.value = l.max_concurrent_downloads;
  }
}

export const refreshLimits = async () => onLimits(await call("GET", "/api/limits"));
