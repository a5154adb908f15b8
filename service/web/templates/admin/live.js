// The page's live parts: sync progress from the operator's event stream, and the status of a
// replayed event. Written with textContent only: nothing received is parsed as HTML.
(() => {
  "use strict";
  const live = document.getElementById("live");
  const rows = document.getElementById("athlete-rows");
  const template = document.getElementById("athlete-row-template");
  const addsRows = rows !== null && template !== null && rows.dataset.liveRows === "1";

  // service/web/admin/views.py `percent`, for the states the stream brings.
  function percent(state) {
    const job = state.job;
    if (!job) return 0;
    if (state.phase === "done" && job.status === "completed") return 100;
    const done = state.counters.hydrated;
    const waiting = state.counters.waiting;
    const share = done + waiting ? Math.floor((100 * done) / (done + waiting)) : 0;
    return state.phase === "done" ? share : Math.min(share, 99);
  }

  function newRow(id) {
    const row = template.content.firstElementChild.cloneNode(true);
    row.dataset.athlete = String(id);
    const link = row.querySelector('[data-field="link"]');
    link.href = `/admin/athletes/${id}`;
    link.textContent = String(id);
    for (const form of row.querySelectorAll("form")) {
      form.action = form.getAttribute("action").replace("/athletes/0/", `/athletes/${id}/`);
    }
    const after = [...rows.children].find((other) => Number(other.dataset.athlete) > id);
    rows.insertBefore(row, after || null);
    const empty = document.getElementById("no-athletes");
    if (empty) empty.remove();
    return row;
  }

  function rowOf(id) {
    const row = document.querySelector(`[data-athlete="${id}"]`);
    if (row !== null || !addsRows) return row;
    return newRow(id);
  }

  function showJob(cell, job) {
    cell.replaceChildren();
    if (!job) {
      const none = document.createElement("span");
      none.className = "muted";
      none.textContent = "none";
      cell.append(none);
      return;
    }
    const badge = document.createElement("span");
    badge.className = `badge ${job.status}`;
    badge.textContent = job.status;
    cell.append(`${job.kind} #${job.id} `, badge);
  }

  function show(state) {
    const row = rowOf(state.athlete_id);
    if (row === null) return;
    const value = percent(state);
    row.dataset.phase = state.phase;
    const field = (name) => row.querySelector(`[data-field="${name}"]`);
    field("progress")?.setAttribute("value", String(value));
    const label = field("percent");
    if (label) label.textContent = `${value} %`;
    const message = field("message");
    if (message) message.textContent = state.message;
    const job = field("job");
    if (job) showJob(job, state.job);
    for (const cell of row.querySelectorAll("[data-counter]")) {
      const count = state.counters[cell.dataset.counter];
      if (typeof count === "number") cell.textContent = count.toLocaleString("en");
    }
  }

  function say(state, text) {
    if (!live) return;
    live.dataset.state = state;
    live.textContent = text;
  }

  // From where the stream stood when the page was drawn: nothing in between is missed.
  const after = live && live.dataset.after ? `?after=${encodeURIComponent(live.dataset.after)}` : "";
  const source = new EventSource(`/admin/sync/events${after}`);
  source.addEventListener("open", () => say("open", "live"));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      say("closed", "not live: reload the page (or log in again)");
    } else {
      say("reconnecting", "reconnecting");
    }
  });
  source.addEventListener("sync", (event) => show(JSON.parse(event.data)));

  // A replayed event: its status until it settles.
  const settled = new Set(["processed", "ignored", "unconfirmed", "failed"]);
  function follow(cell) {
    const id = cell.dataset.watchEvent;
    const tick = async () => {
      try {
        const response = await fetch(`/admin/events/${id}`, { credentials: "same-origin" });
        if (!response.ok) return;
        const event = await response.json();
        cell.textContent = event.status;
        cell.className = `badge ${event.status}`;
        if (settled.has(event.status)) return;
      } catch (error) {
        // The next tick asks again.
      }
      setTimeout(tick, 1000);
    };
    tick();
  }
  document.querySelectorAll("[data-watch-event]").forEach(follow);
})();
