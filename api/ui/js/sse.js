// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, and a key in the
// query string would end up in access logs. This reads the text/event-stream body itself, and on a
// dropped or closed stream reconnects with Last-Event-ID, so no event is missed or repeated.
import { authHeaders } from "./api.js";

// Parse one chunk of event-stream text; returns complete events and the unfinished remainder.
export function parseEvents(buffer) {
  const events = [];
  const blocks = buffer.replace(/\r\n?/g, "\n").split("\n\n");
  const rest = blocks.pop();
  for (const block of blocks) {
    const event = { event: "message", data: [], id: null, retry: null };
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;  // comments are keep-alives
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") event.data.push(value);
      else if (field === "event") event.event = value;
      else if (field === "id") event.id = value;
      else if (field === "retry" && /^\d+$/.test(value)) event.retry = Number(value);
    }
    events.push({ ...event, data: event.data.join("\n") });
  }
  return { events, rest };
}

// Follow `path` until onEvent returns true (a final event) or `signal` aborts; returns a stop function.
export function follow(path, onEvent, { onError = () => {} } = {}) {
  const controller = new AbortController();
  let lastId = null;
  let retryMs = 2000;
  let done = false;

  async function once() {
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (lastId) headers["Last-Event-ID"] = lastId;
    const response = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
    if (!response.ok) {
      done = response.status >= 400 && response.status < 500;  // a bad key or id will not fix itself
      throw new Error(`events: HTTP ${response.status}`);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done: ended } = await reader.read();
      if (ended) return;
      const parsed = parseEvents(buffer + value);
      buffer = parsed.rest;
      for (const event of parsed.events) {
        if (event.retry !== null) retryMs = event.retry;
        if (event.id) lastId = event.id;
        if (!event.data) continue;
        let data;
        try { data = JSON.parse(event.data); } catch { data = event.data; }
        if (onEvent(event.event, data, event.id) === true) { done = true; controller.abort(); return; }
      }
    }
  }

  (async () => {
    while (!done && !controller.signal.aborted) {
      try { await once(); } catch (error) { if (!controller.signal.aborted) onError(error); }
      if (done || controller.signal.aborted) break;
      await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  })();
  return () => { done = true; controller.abort(); };
}
