export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

export const rate = (bps) => (bps ? `${bytes(bps)}/s` : "unlimited");

export function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const pad = (x) => String(x).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(sec)}` : `${m}:${pad(sec)}`;
}

export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

// State reads from the icon and the word, not only from the colour.
export const STATUS = {
  queued: ["◌", "Waiting for a download slot"],
  downloading: ["⬇", "Downloading"],
  verifying: ["⟳", "Verifying checksums"],
  running: ["▶", "Running"],
  paused: ["‖", "Paused"],
  complete: ["✔", "Complete"],
  failed: ["✖", "Failed"],
  cancelled: ["⊘", "Cancelled"],
};

export function statusText(status) {
  const [icon, text] = STATUS[status] || ["•", status];
  return `${icon} ${text}`;
}
