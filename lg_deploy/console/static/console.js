// lg-deploy console: live refresh of each page's #live part (polling with back-off), a run's
// live stream, and select-all. Text from the server's data is only ever set as textContent.
"use strict";

const MAX_BACKOFF_SECONDS = 60;

function liveRefresh() {
  const region = document.getElementById("live");
  const toggle = document.getElementById("live-toggle");
  const status = document.getElementById("live-status");
  if (!region || !region.dataset.refreshSeconds) return;
  const every = Number(region.dataset.refreshSeconds) * 1000;
  let paused = false;
  let failures = 0;
  let timer = null;
  toggle.hidden = false;
  toggle.addEventListener("click", () => {
    paused = !paused;
    toggle.setAttribute("aria-pressed", String(paused));
    toggle.textContent = paused ? "Resume live updates" : "Pause live updates";
    status.textContent = paused ? "paused" : "";
    if (!paused) schedule(0);
  });
  const busy = () =>
    document.hidden ||
    region.querySelector("input[type=checkbox]:checked") !== null ||
    region.contains(document.activeElement) && document.activeElement !== region;
  const schedule = (delay) => {
    clearTimeout(timer);
    timer = setTimeout(tick, delay);
  };
  async function tick() {
    if (paused) return;
    if (busy()) return schedule(every);
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    try {
      const answer = await fetch(url, { headers: { Accept: "text/html" }, credentials: "same-origin" });
      if (answer.redirected || answer.status === 401) {
        status.textContent = "signed out: reload to sign in";
        return;
      }
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const html = await answer.text();
      if (!busy() && !paused) region.innerHTML = html;
      failures = 0;
      status.textContent = "";
      region.dispatchEvent(new Event("console:refreshed"));
      if (region.querySelector("[data-live-stop]")) return;
      schedule(every);
    } catch (error) {
      failures += 1;
      const wait = Math.min(MAX_BACKOFF_SECONDS, (every / 1000) * 2 ** failures);
      status.textContent = "live updates failing; retrying in " + Math.round(wait) + " s";
      schedule(wait * 1000);
    }
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden && !paused) schedule(0); });
  if (!region.querySelector("[data-live-stop]")) schedule(every);
}

function selectAll() {
  document.addEventListener("change", (event) => {
    if (event.target.id !== "select-all") return;
    for (const box of document.querySelectorAll("#executions input[name=ids]")) {
      box.checked = event.target.checked;
    }
  });
}

function parseEvents(buffer, onEvent) {
  const blocks = buffer.split(/\r?\n\r?\n/);
  const rest = blocks.pop();
  for (const block of blocks) {
    const fields = {};
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(":")) continue;
      const at = line.indexOf(":");
      fields[line.slice(0, at)] = line.slice(at + 1).replace(/^ /, "");
    }
    if (fields.event) onEvent(fields);
  }
  return rest;
}

function liveStream() {
  const list = document.getElementById("stream");
  if (!list) return;
  const state = document.getElementById("stream-state");
  const count = document.getElementById("stream-count");
  let lastId = "0";
  let shown = 0;
  let failures = 0;
  const show = (fields) => {
    lastId = fields.id || lastId;
    const item = document.createElement("li");
    const id = document.createElement("span");
    id.className = "muted";
    id.textContent = fields.id || "";
    const name = document.createElement("strong");
    name.textContent = fields.event;
    const data = document.createElement("code");
    data.textContent = fields.data.length > 2000 ? fields.data.slice(0, 2000) + " …" : fields.data;
    item.append(id, name, data);
    list.append(item);
    shown += 1;
    count.textContent = String(shown);
    list.scrollTop = list.scrollHeight;
  };
  async function connect() {
    state.textContent = "live";
    try {
      const answer = await fetch(list.dataset.url, {
        headers: { Accept: "text/event-stream", "Last-Event-ID": lastId },
        credentials: "same-origin",
      });
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const reader = answer.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        failures = 0;
        buffer = parseEvents(buffer + decoder.decode(value, { stream: true }), show);
      }
      state.textContent = "ended: the run is final";
    } catch (error) {
      failures += 1;
      const wait = Math.min(MAX_BACKOFF_SECONDS, 2 ** failures);
      state.textContent = "disconnected; reconnecting in " + wait + " s";
      setTimeout(connect, wait * 1000);
    }
  }
  connect();
}

liveRefresh();
selectAll();
liveStream();
