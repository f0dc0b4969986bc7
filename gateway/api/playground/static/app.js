// The gateway's playground: plain JavaScript, no build step, nothing loaded from another host.
// It talks to the gateway that served it (relative URLs), with the key (if any) from this tab's
// session storage.

const KEY_STORAGE = "llm-gateway-api-key";
const $ = (id) => document.getElementById(id);

const page = {
  form: $("chat"),
  keyBox: $("key-box"),
  key: $("key"),
  model: $("model"),
  system: $("system"),
  message: $("message"),
  temperature: $("temperature"),
  maxTokens: $("max-tokens"),
  send: $("send"),
  stop: $("stop"),
  status: $("status"),
  error: $("error"),
  answer: $("answer"),
  council: $("council"),
  councilHelp: $("council-help"),
  members: $("members"),
  details: $("details"),
};

const state = { models: new Map(), controller: null };

// ---- the key: asked for only when the gateway answers 401, kept in session storage only

function storedKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function authHeaders() {
  const key = storedKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// Shows the key field; the first time, the focus goes to it (later, the person may be typing elsewhere).
function askForKey() {
  if (!page.keyBox.hidden) return;
  page.keyBox.hidden = false;
  page.key.focus();
}

// The key field's value into session storage; true when it changed.
function keepKey() {
  const key = page.key.value.trim();
  if (key === storedKey()) return false;
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  return true;
}

page.key.value = storedKey();
if (page.key.value) page.keyBox.hidden = false;
page.key.addEventListener("change", () => keepKey() && loadModels());

// ---- messages to the person

function say(text) {
  page.status.textContent = text;
}

function clearError() {
  page.error.hidden = true;
  page.error.textContent = "";
}

// An error as the gateway's error object says it: status, code, message, and the field it names.
function showError(status, error) {
  const parts = [];
  if (status) parts.push(`Error ${status}`);
  const code = error && (error.code || error.type);
  if (code) parts.push(`(${code})`);
  const head = parts.join(" ");
  const message = (error && error.message) || "The gateway gave no message.";
  const param = error && error.param ? ` [${error.param}]` : "";
  page.error.textContent = head ? `${head}: ${message}${param}` : `${message}${param}`;
  page.error.hidden = false;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (_) {
    // not JSON: fall through
  }
  return { message: response.statusText || "No message." };
}

// ---- the routes

async function loadModels() {
  clearError();
  say("Loading the routes…");
  let response;
  try {
    response = await fetch("v1/models", { headers: authHeaders() });
  } catch (exc) {
    say("");
    showError(null, { message: `The gateway could not be reached (${exc.message}).` });
    return false;
  }
  if (!response.ok) {
    if (response.status === 401) askForKey();
    say(response.status === 401 ? "This gateway asks for an API key." : "");
    showError(response.status, await errorOf(response));
    return false;
  }
  const list = await response.json();
  const previous = page.model.value;
  state.models = new Map(list.data.map((model) => [model.id, model]));
  page.model.replaceChildren(
    ...list.data.map((model) => {
      const option = document.createElement("option");
      option.value = model.id;
      option.textContent = model.quorum ? `${model.id} (quorum: ${model.quorum.strategy})` : model.id;
      return option;
    }),
  );
  if (state.models.has(previous)) page.model.value = previous;
  say(`${list.data.length} route${list.data.length === 1 ? "" : "s"} loaded.`);
  showCouncil();
  return true;
}

page.model.addEventListener("change", showCouncil);

function quorumOf(name) {
  const model = state.models.get(name);
  return model && model.quorum && Array.isArray(model.quorum.members) ? model.quorum : null;
}

// ---- the council of a quorum route: one column (a region named after the member route) each

function showCouncil() {
  const quorum = quorumOf(page.model.value);
  page.council.hidden = !quorum;
  page.members.replaceChildren();
  if (!quorum) return;
  page.councilHelp.textContent =
    `A quorum route (${quorum.strategy}): its members answer side by side, round by round, ` +
    "then the verdict streams into the answer.";
  for (const member of quorum.members) memberColumn(member);
}

function memberColumn(member) {
  for (const column of page.members.children) {
    if (column.dataset.member === member) return column;
  }
  const column = document.createElement("section");
  column.className = "member";
  column.dataset.member = member;
  column.setAttribute("role", "region");
  const heading = document.createElement("h3");
  heading.id = `member-${page.members.children.length}`;
  heading.textContent = member;
  column.setAttribute("aria-labelledby", heading.id);
  column.append(heading);
  page.members.append(column);
  return column;
}

function memberTurn(member, round) {
  const column = memberColumn(member);
  for (const turn of column.querySelectorAll(".turn")) {
    if (turn.dataset.round === String(round)) return turn;
  }
  const turn = document.createElement("div");
  turn.className = "turn";
  turn.dataset.round = String(round);
  const label = document.createElement("h4");
  label.textContent = `Round ${round}`;
  const text = document.createElement("p");
  text.className = "text";
  turn.append(label, text);
  column.append(turn);
  return turn;
}

function noteOnTurn(turn, text, isError) {
  const note = document.createElement("p");
  note.className = isError ? "note error-note" : "note";
  note.textContent = text;
  turn.append(note);
}

// ---- figures

function setFigure(name, value) {
  const cell = page.details.querySelector(`[data-figure="${name}"]`);
  if (cell) cell.textContent = value === null || value === undefined || value === "" ? "–" : String(value);
}

function resetFigures() {
  for (const cell of page.details.querySelectorAll("[data-figure]")) cell.textContent = "–";
}

function showHeaders(headers) {
  for (const name of [
    "x-gateway-provider",
    "x-gateway-upstream-model",
    "x-gateway-attempts",
    "x-gateway-max-tokens",
    "x-request-id",
  ]) {
    setFigure(name, headers.get(name));
  }
}

function showUsage(usage) {
  if (!usage) return;
  setFigure("prompt_tokens", usage.prompt_tokens);
  setFigure("completion_tokens", usage.completion_tokens);
  setFigure("total_tokens", usage.total_tokens);
}

const ms = (value) => `${Math.round(value)} ms`;

// ---- server-sent events, from a fetch body (EventSource cannot POST)

class EventParser {
  constructor() {
    this.buffer = "";
  }

  // Complete events in `text`, as {event, data}; what is left waits for the next call.
  push(text) {
    this.buffer += text.replace(/\r\n?/g, "\n");
    const events = [];
    let end;
    while ((end = this.buffer.indexOf("\n\n")) !== -1) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
      if (data.length) events.push({ event, data: data.join("\n") });
    }
    return events;
  }
}

async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new EventParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    yield* parser.push(value);
  }
}

// ---- sending

function requestBody() {
  const messages = [];
  const system = page.system.value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push({ role: "user", content: page.message.value });
  const body = { model: page.model.value, messages, stream: true, stream_options: { include_usage: true } };
  const temperature = Number.parseFloat(page.temperature.value);
  if (Number.isFinite(temperature)) body.temperature = temperature;
  const maxTokens = Number.parseInt(page.maxTokens.value, 10);
  if (Number.isInteger(maxTokens) && maxTokens > 0) body.max_tokens = maxTokens;
  return body;
}

// While a request runs, Send is disabled and Stop enabled; a keyboard user's focus moves with them
// (a disabled button would drop it to the top of the page).
function busy(on) {
  const buttonFocused = document.activeElement === page.send || document.activeElement === page.stop;
  const [enabled, disabled] = on ? [page.stop, page.send] : [page.send, page.stop];
  enabled.disabled = false;
  if (buttonFocused) enabled.focus(); // before the other is disabled, which would drop the focus
  disabled.disabled = true;
  page.answer.setAttribute("aria-busy", on ? "true" : "false");
}

async function send(event) {
  event.preventDefault();
  if (state.controller) return;
  clearError();
  if ((keepKey() || !state.models.size) && !(await loadModels())) return;
  if (!page.message.value.trim()) {
    showError(null, { message: "Write a message first.", param: "Message" });
    page.message.focus();
    return;
  }
  const quorum = quorumOf(page.model.value);
  page.answer.textContent = "";
  resetFigures();
  if (quorum) showCouncil();
  state.controller = new AbortController();
  busy(true);
  say(quorum ? "The council is at work…" : "Waiting for the first token…");
  const clock = { started: performance.now(), first: null };
  try {
    const response = await fetch(quorum ? "api/v1/debates" : "v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...authHeaders() },
      body: JSON.stringify(requestBody()),
      signal: state.controller.signal,
    });
    showHeaders(response.headers);
    if (!response.ok) {
      if (response.status === 401) askForKey();
      showError(response.status, await errorOf(response));
      say("");
      return;
    }
    const ended = quorum ? await readDebate(response, clock) : await readChat(response, clock);
    setFigure("total", ms(performance.now() - clock.started));
    say(ended ? "Done." : "");
  } catch (exc) {
    if (exc.name === "AbortError") say("Stopped.");
    else showError(null, { message: `The request failed: ${exc.message}` });
  } finally {
    state.controller = null;
    busy(false);
  }
}

function firstToken(clock) {
  if (clock.first !== null) return;
  clock.first = performance.now();
  setFigure("ttft", ms(clock.first - clock.started));
  say("Streaming…");
}

function appendAnswer(text) {
  page.answer.append(document.createTextNode(text));
}

// A chat completions stream: chunks, then [DONE]; an error event ends it early.
async function readChat(response, clock) {
  for await (const { data } of events(response)) {
    if (data === "[DONE]") return true;
    const chunk = JSON.parse(data);
    if (chunk.error) {
      showError(null, chunk.error);
      return false;
    }
    for (const choice of chunk.choices || []) {
      if (choice.index !== 0) continue;
      const text = (choice.delta && (choice.delta.content || choice.delta.refusal)) || "";
      if (text) {
        firstToken(clock);
        appendAnswer(text);
      }
      if (choice.finish_reason) setFigure("finish_reason", choice.finish_reason);
    }
    showUsage(chunk.usage);
  }
  showError(null, { message: "The stream ended before [DONE]: the answer may be incomplete." });
  return false;
}

// A debate (POST /api/v1/debates): named events, round by round, then the verdict and `done`.
async function readDebate(response, clock) {
  for await (const { event, data } of events(response)) {
    const payload = JSON.parse(data);
    if (event === "round") {
      say(`Round ${payload.round}…`);
    } else if (event === "member.delta") {
      firstToken(clock);
      memberTurn(payload.member, payload.round).querySelector(".text").append(document.createTextNode(payload.content));
    } else if (event === "member.done") {
      const usage = payload.usage ? `, ${payload.usage.completion_tokens} tokens` : "";
      noteOnTurn(memberTurn(payload.member, payload.round), `${payload.finish_reason || "done"}${usage}`, false);
    } else if (event === "member.error") {
      const error = payload.error || {};
      noteOnTurn(memberTurn(payload.member, payload.round), `Left out: ${error.message || error.code || "failed"}`, true);
    } else if (event === "verdict.delta") {
      firstToken(clock);
      appendAnswer(payload.content);
    } else if (event === "done") {
      showUsage(payload.usage);
      if (payload.quorum && payload.quorum.judge) setFigure("finish_reason", payload.quorum.judge.finish_reason);
      return true;
    } else if (event === "error") {
      showError(null, payload.error || payload);
      return false;
    }
  }
  showError(null, { message: "The debate's stream ended before its verdict was done." });
  return false;
}

page.form.addEventListener("submit", send);
page.stop.addEventListener("click", () => state.controller && state.controller.abort());
page.message.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) page.form.requestSubmit();
});

loadModels();
