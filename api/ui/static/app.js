import { call, session, stream } from "./api.js";
import * as active from "./active.js";
import { $, say, show } from "./dom.js";
import * as downloads from "./downloads.js";
import * as limits from "./limits.js";
import * as models from "./models.js";

const VIEWS = { downloads: null, models: models.refreshModels, active: active.refreshActive, limits: limits.refreshLimits };
let current = "downloads";
let stopStream = null;
let logTimer = null;
let modelTimer = null;

function select(view) {
  if (!(view in VIEWS)) view = "downloads";
  current = view;
  for (const b of document.querySelectorAll("#tabs button")) {
    if (b.dataset.view === view) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
  }
  for (const name of Object.keys(VIEWS)) show($(`#view-${name}`), name === view);
  if (location.hash !== `#${view}`) history.replaceState(null, "", `#${view}`);
  refresh();
}

function refresh() {
  const fn = VIEWS[current];
  if (fn) fn().catch((err) => console.warn(err.message));
}

// Finished jobs change the cache: the models and active views reload, at most every 300 ms.
function laterRefresh() {
  clearTimeout(modelTimer);
  modelTimer = setTimeout(() => { if (current === "models" || current === "active") refresh(); }, 300);
}
const FINAL = ["complete", "failed", "cancelled"];
const lastStatus = new Map();

function onEvent(kind, data) {
  if (kind === "limits") return limits.onLimits(data);
  if (kind !== "job") return;
  downloads.onJob(data);
  models.onJob(data);
  active.onJob(data, refresh);
  const before = lastStatus.get(data.job_id);
  lastStatus.set(data.job_id, data.status);
  if (before !== undefined && before !== data.status && FINAL.includes(data.status)) laterRefresh();
}

function setConn(state) {
  const el = $("#conn");
  if (state === "live") {
    const wasDown = el.dataset.state === "reconnecting";
    el.textContent = "● Live";
    el.dataset.state = "live";
    if (wasDown) refresh();
  } else {
    el.textContent = "◌ Reconnecting…";
    el.dataset.state = "reconnecting";
  }
}

function start() {
  show($("#signin"), false);
  show($("#tabs"), true);
  show($("#session"), true);
  select(location.hash.slice(1) || "downloads");
  stopStream = stream("/api/events", { onEvent, onState: setConn });
  logTimer = setInterval(() => {
    if (current === "active" && !document.hidden) active.refreshLogs();
  }, 5000);
}

function signOut(message = "") {
  if (stopStream) stopStream();
  stopStream = null;
  clearInterval(logTimer);
  session.token = null;
  downloads.clearDownloads();
  lastStatus.clear();
  for (const name of Object.keys(VIEWS)) show($(`#view-${name}`), false);
  show($("#tabs"), false);
  show($("#session"), false);
  show($("#signin"), true);
  const err = $("#signin-error");
  say(err, message, "error");
  show(err, !!message);
  $("#token").focus();
}

async function signIn(e) {
  e.preventDefault();
  const input = $("#token");
  session.token = input.value.trim();
  input.value = "";
  try {
    await call("GET", "/api/limits");
  } catch (err) {
    const wrong = err.status === 401;
    session.token = null;
    const msg = wrong ? "Wrong token: the API refused it (401 unauthorized). Check PROXY_API_KEY."
      : `Cannot sign in: ${err.message}`;
    say($("#signin-error"), msg, "error");
    show($("#signin-error"), true);
    return;
  }
  show($("#signin-error"), false);
  start();
}

function init() {
  session.onUnauthorized = () => { if (stopStream) signOut("The API no longer accepts this token; sign in again."); };
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", () => signOut());
  $("#logs-refresh").addEventListener("click", () => active.refreshLogs());
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => select(b.dataset.view));
  window.addEventListener("hashchange", () => { if (stopStream) select(location.hash.slice(1)); });
  downloads.initDownloads();
  limits.initLimits();
  if (session.token) start(); else $("#token").focus();
}

init();
