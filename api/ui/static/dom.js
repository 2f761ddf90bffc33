// h("button.small", {type: "button", onclick}, "Pause"): elements without innerHTML.
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag);
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}

export const $ = (sel) => document.querySelector(sel);

export function show(el, visible) { el.hidden = !visible; }

export function say(el, text, kind = "") {
  el.textContent = text;
  el.className = kind;
}

// A modal question; resolves {ok, checked}. Escape or "no" resolves ok=false.
export function confirm({ title, text, yes, no = "Keep", check = null }) {
  const dlg = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-yes").textContent = yes;
  $("#confirm-no").textContent = no;
  show($("#confirm-check-row"), !!check);
  $("#confirm-check").checked = false;
  if (check) $("#confirm-check-label").textContent = check;
  return new Promise((resolve) => {
    const done = (ok) => {
      $("#confirm-yes").onclick = $("#confirm-no").onclick = dlg.oncancel = null;
      const checked = $("#confirm-check").checked;
      dlg.close();
      resolve({ ok, checked });
    };
    $("#confirm-yes").onclick = () => done(true);
    $("#confirm-no").onclick = () => done(false);
    dlg.oncancel = (e) => { e.preventDefault(); done(false); };
    dlg.showModal();
    $("#confirm-no").focus();
  });
}
