// The switchboard web chat page: a pre-chat form, then one conversation over a WebSocket.
// Nothing is lost or shown twice: each message the visitor writes gets a client id and waits
// in a local outbox until the server acknowledges it (a resend after a reconnect is stored
// once); after a reconnect the page asks for what came after the last message it shows.
(() => {
  "use strict";
  const root = document.getElementById("chat");
  const fields = (root.dataset.prechat || "").split(",").filter((f) => f && !f.startsWith("{{"));
  const KEY = "switchboard-chat";
  const $ = (id) => document.getElementById(id);
  const prechat = $("prechat");
  const conversation = $("conversation");
  const list = $("messages");
  const compose = $("compose");
  const input = $("message");
  const fileInput = $("file");
  const callMe = $("call-me");
  const statusLine = $("status");
  const typingLine = $("typing");

  let saved = {};
  try { saved = JSON.parse(localStorage.getItem(KEY) || "{}") || {}; } catch (_) { saved = {}; }
  saved.outbox = Array.isArray(saved.outbox) ? saved.outbox : [];
  const save = () => { try { localStorage.setItem(KEY, JSON.stringify(saved)); } catch (_) { /* private mode */ } };

  let ws = null;
  let opened = false;
  let retry = 0;
  let lastShown = null;
  let lastTyping = 0;
  let typingTimer = null;
  const shown = new Map();   // message id -> <li>
  const pending = new Map(); // client id -> <li>

  const status = (text) => { statusLine.textContent = text || ""; };
  const newId = () => (window.crypto && crypto.randomUUID)
    ? crypto.randomUUID()
    : Array.from({ length: 4 }, () => Math.random().toString(16).slice(2, 10)).join("");

  function fileUrl(id) {
    return `/chat/attachments/${encodeURIComponent(id)}?token=${encodeURIComponent(saved.token)}`;
  }

  function showFiles(li, files) {
    const box = li.querySelector(".files");
    box.replaceChildren();
    for (const f of files || []) {
      const a = document.createElement("a");
      a.href = fileUrl(f.id);
      a.target = "_blank";
      a.rel = "noopener";
      if (f.content_type.startsWith("image/")) {
        const img = document.createElement("img");
        img.src = a.href;
        img.alt = f.name;
        img.className = "thumb";
        a.append(img);
      } else {
        a.textContent = f.name;
      }
      box.append(a);
    }
  }

  function item(kind, name, text) {
    const li = document.createElement("li");
    li.className = kind;
    const who = document.createElement("span");
    who.className = "author";
    who.textContent = kind === "customer" ? "You" : (name || (kind === "bot" ? "Bot" : "Agent"));
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    const files = document.createElement("span");
    files.className = "files";
    const state = document.createElement("span");
    state.className = "state";
    li.append(who, body, files, state);
    return li;
  }

  function setState(li, text) { li.querySelector(".state").textContent = text; }

  function show(m) {
    if (shown.has(m.id)) {
      // Already shown (acknowledged): the server's text wins (it is masked).
      shown.get(m.id).querySelector(".text").textContent = m.text;
      showFiles(shown.get(m.id), m.attachments);
      return;
    }
    let li = m.client_id ? pending.get(m.client_id) : null;
    if (li) {
      pending.delete(m.client_id);
      saved.outbox = saved.outbox.filter((o) => o.client_id !== m.client_id);
      save();
      li.querySelector(".text").textContent = m.text;
      li.classList.remove("pending");
    } else {
      li = item(m.author.kind, m.author.name, m.text);
      list.append(li);
    }
    li.dataset.id = m.id;
    showFiles(li, m.attachments);
    if (m.author.kind === "customer") setState(li, m.read ? "Read" : "Sent");
    shown.set(m.id, li);
    lastShown = m.id;
    list.scrollTop = list.scrollHeight;
    if (m.author.kind !== "customer") {
      typingLine.textContent = "";
      send({ type: "read", message_id: m.id });
    }
  }

  function markRead(upTo) {
    for (const [, li] of shown) {
      if (li.classList.contains("customer")) setState(li, "Read");
      if (li.dataset.id === upTo) break;
    }
  }

  function send(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(frame)); return true; }
    return false;
  }

  function onFrame(f) {
    switch (f.type) {
      case "hello": callMe.hidden = !f.call_me; break;
      case "calling": status(`Calling you on ${f.to}…`); break;
      case "message": show(f); break;
      case "ack": {
        const li = pending.get(f.client_id);
        pending.delete(f.client_id);
        saved.outbox = saved.outbox.filter((o) => o.client_id !== f.client_id);
        save();
        if (!li) break;
        if (shown.has(f.id)) { li.remove(); break; }
        li.dataset.id = f.id;
        li.classList.remove("pending");
        setState(li, "Sent");
        shown.set(f.id, li);
        lastShown = f.id;
        break;
      }
      case "read": markRead(f.message_id); break;
      case "typing":
        typingLine.textContent = `${f.name || "Agent"} is typing…`;
        clearTimeout(typingTimer);
        typingTimer = setTimeout(() => { typingLine.textContent = ""; }, 5000);
        break;
      case "ended": {
        const li = document.createElement("li");
        li.className = "system";
        li.textContent = "The conversation has ended. Write again to start a new one.";
        list.append(li);
        break;
      }
      case "resync": send({ type: "resume", after: lastShown }); break;
      case "error": status(f.detail || "Something went wrong."); break;
      default: break;
    }
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${proto}//${location.host}/chat/ws?token=${encodeURIComponent(saved.token)}`;
    opened = false;
    ws = new WebSocket(url);
    ws.onopen = () => {
      opened = true;
      retry = 0;
      status("");
      send({ type: "resume", after: lastShown });
      for (const o of saved.outbox) {
        send({ type: "message", client_id: o.client_id, text: o.text, attachments: o.attachments || [] });
      }
    };
    ws.onmessage = (e) => {
      let f;
      try { f = JSON.parse(e.data); } catch (_) { return; }
      onFrame(f);
    };
    ws.onclose = () => {
      ws = null;
      status("Connection lost. Reconnecting…");
      if (!opened) {
        // Refused before it opened: an expired or unknown token starts over.
        fetch(url.replace(/^ws/, "http")).then((r) => {
          if (r.status === 401) { delete saved.token; saved.outbox = []; save(); start(); }
          else later();
        }, later);
        return;
      }
      later();
    };
  }

  function later() {
    const wait = Math.min(10000, 500 * 2 ** retry);
    retry += 1;
    setTimeout(connect, wait);
  }

  function openChat() {
    prechat.hidden = true;
    conversation.hidden = false;
    for (const o of saved.outbox) {
      const li = item("customer", null, o.text);
      li.classList.add("pending");
      setState(li, "Sending…");
      list.append(li);
      pending.set(o.client_id, li);
    }
    connect();
    input.focus();
  }

  async function newVisitor(answers) {
    const r = await fetch("/chat/visitor", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(answers),
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { status(body.detail || "The chat is unavailable."); return false; }
    saved.token = body.token;
    save();
    return true;
  }

  function start() {
    if (saved.token) { openChat(); return; }
    if (fields.length === 0) {
      newVisitor({}).then((ok) => ok && openChat());
      return;
    }
    for (const div of prechat.querySelectorAll(".field")) div.hidden = !fields.includes(div.dataset.field);
    conversation.hidden = true;
    prechat.hidden = false;
  }

  prechat.addEventListener("submit", async (e) => {
    e.preventDefault();
    const answers = {};
    for (const f of fields) {
      const v = prechat.elements[f].value.trim();
      if (v) answers[f] = v;
    }
    if (await newVisitor(answers)) openChat();
  });

  async function uploadFile(file) {
    const url = `/chat/attachments?token=${encodeURIComponent(saved.token)}&name=${encodeURIComponent(file.name)}`;
    const r = await fetch(url, { method: "POST", body: file });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { status(body.detail || "The file could not be sent."); return null; }
    return body;
  }

  compose.addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    const file = fileInput.files && fileInput.files[0];
    if (!text && !file) return;
    let files = [];
    if (file) {
      status("Sending the file…");
      const up = await uploadFile(file);
      if (!up) return;
      status("");
      files = [up];
      fileInput.value = "";
    }
    const o = { client_id: newId(), text, attachments: files.map((f) => f.id) };
    saved.outbox.push(o);
    save();
    const li = item("customer", null, text);
    li.classList.add("pending");
    setState(li, "Sending…");
    showFiles(li, files);
    list.append(li);
    pending.set(o.client_id, li);
    list.scrollTop = list.scrollHeight;
    input.value = "";
    send({ type: "message", client_id: o.client_id, text, attachments: o.attachments });
  });

  callMe.addEventListener("click", () => {
    if (!send({ type: "call_me" })) status("Not connected: try again in a moment.");
  });

  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); compose.requestSubmit(); }
  });
  input.addEventListener("input", () => {
    const now = Date.now();
    if (now - lastTyping > 3000) { lastTyping = now; send({ type: "typing" }); }
  });

  window.switchboardChat = { socket: () => ws };
  start();
})();
