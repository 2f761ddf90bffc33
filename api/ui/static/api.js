// Every data call: the bearer token from sessionStorage, in the Authorization header only.
const KEY = "llmbox.token";

export const session = {
  get token() { return sessionStorage.getItem(KEY); },
  set token(t) { if (t) sessionStorage.setItem(KEY, t); else sessionStorage.removeItem(KEY); },
  onUnauthorized: () => {},
};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `The API answered ${status}.`);
    this.status = status;
    this.code = body && body.error;
  }
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${session.token}`, ...extra };
}

export async function call(method, path, { query, body } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  let r;
  try {
    r = await fetch(url, {
      method, cache: "no-store",
      headers: headers(body ? { "Content-Type": "application/json" } : {}),
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new ApiError(0, { detail: "Cannot reach the API (network error)." });
  }
  let data = null;
  try { data = await r.json(); } catch { /* an empty or non-JSON body */ }
  if (r.status === 401) session.onUnauthorized();
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// Server-Sent Events over fetch (EventSource cannot send a header): yields {event, data}.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

// Keeps one stream open; after an API restart or a network cut it connects again by itself.
export function stream(path, { onEvent, onState }) {
  const ctl = new AbortController();
  (async () => {
    let delay = 500;
    while (!ctl.signal.aborted) {
      try {
        const r = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), signal: ctl.signal,
                                      cache: "no-store" });
        if (r.status === 401) { session.onUnauthorized(); return; }
        if (!r.ok) throw new Error(`status ${r.status}`);
        onState("live");
        delay = 500;
        for await (const ev of events(r)) onEvent(ev.event, JSON.parse(ev.data));
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      onState("reconnecting");
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 5000);
    }
  })();
  return () => ctl.abort();
}
