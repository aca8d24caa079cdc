/* Chat Agent Gateway web chat widget (SPEC §14).
 * Embed: <script src="https://chat.example.com/widget.js" data-key="pk_…" async></script>
 * Optional: data-user-id + data-user-hash (identity verification, hash computed by your server).
 * One file, no dependencies, no build step. Renders in a Shadow DOM; talks only to /widget/v1/*;
 * inserts every text with textContent; no eval, no inline handlers, styles via adoptedStyleSheets.
 */
(function () {
  "use strict";

  var script = document.currentScript || document.querySelector("script[data-key][src*='widget.js']");
  if (!script || window.__chatgwWidget) return;
  window.__chatgwWidget = true;

  var CSS = [
    ":host{all:initial}",
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}",
    ".launcher{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;",
    "background:var(--accent);color:#fff;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483000;",
    "font-size:26px;line-height:56px;padding:0}",
    ".launcher:focus-visible,button:focus-visible,input:focus-visible,textarea:focus-visible{outline:3px solid #1e1b4b;outline-offset:2px}",
    ".badge{position:absolute;top:-4px;right:-4px;min-width:22px;height:22px;border-radius:11px;background:#b91c1c;",
    "color:#fff;font-size:12px;font-weight:700;line-height:22px;text-align:center;padding:0 6px}",
    ".panel{position:fixed;right:20px;bottom:88px;width:370px;max-width:calc(100vw - 24px);height:560px;",
    "max-height:calc(100vh - 112px);background:#fff;color:#111827;border-radius:14px;display:flex;",
    "flex-direction:column;box-shadow:0 10px 40px rgba(0,0,0,.28);overflow:hidden;z-index:2147483000}",
    ".panel[hidden]{display:none}",
    "header{background:var(--accent);color:#fff;padding:12px 14px;display:flex;align-items:center;gap:8px}",
    "header h2{font-size:16px;margin:0;flex:1;font-weight:600}",
    ".close{background:transparent;border:0;color:#fff;font-size:22px;cursor:pointer;width:36px;height:36px;border-radius:8px}",
    ".notice{background:#fef3c7;color:#78350f;padding:8px 12px;font-size:13px}",
    ".notice.error{background:#fee2e2;color:#7f1d1d}",
    ".notice[hidden],.typing[hidden],form[hidden],.callbox[hidden],.link[hidden]{display:none}",
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f9fafb}",
    ".msg{max-width:85%;padding:8px 11px;border-radius:12px;font-size:14px;line-height:1.4;white-space:pre-wrap;",
    "overflow-wrap:anywhere}",
    ".msg.customer{align-self:flex-end;background:var(--accent);color:#fff;border-bottom-right-radius:4px}",
    ".msg.agent,.msg.operator,.msg.preview{align-self:flex-start;background:#e5e7eb;color:#111827;border-bottom-left-radius:4px}",
    ".who{display:block;font-size:11px;font-weight:600;color:#4b5563;margin-bottom:2px}",
    ".msg.customer .who{color:#e0e7ff}",
    ".launcher svg{width:28px;height:28px;vertical-align:middle;fill:currentColor}",
    ".typing{padding:4px 14px;font-size:12px;color:#4b5563;font-style:italic}",
    "form{display:flex;flex-direction:column;gap:6px;padding:10px 12px;border-top:1px solid #e5e7eb}",
    "label{font-size:13px;font-weight:600;color:#374151}",
    "input,textarea{font-size:14px;padding:8px;border:1px solid #9ca3af;border-radius:8px;width:100%;color:#111827;background:#fff}",
    "textarea{resize:none;height:44px}",
    ".row{display:flex;gap:6px;align-items:flex-end}",
    ".send,.primary{background:var(--accent);color:#fff;border:0;border-radius:8px;padding:9px 14px;font-size:14px;cursor:pointer}",
    ".link{background:transparent;border:0;color:#1d4ed8;font-size:12px;cursor:pointer;text-decoration:underline;padding:2px 12px 8px;text-align:left}",
    ".send:disabled{opacity:.5;cursor:default}",
    "@media (max-width:480px){.panel{right:8px;left:8px;width:auto;max-width:none;bottom:80px;height:calc(100vh - 96px)}",
    ".launcher{right:12px;bottom:12px}}"
  ].join("");

  var S = {
    base: new URL(script.src, location.href).origin,
    key: script.getAttribute("data-key") || "",
    user: script.getAttribute("data-user-id")
      ? { id: script.getAttribute("data-user-id"), hash: script.getAttribute("data-user-hash") || "" }
      : null,
    token: null,
    sessionId: null,
    lastSeq: 0,
    seen: {},
    agent: null,
    open: false,
    unread: 0,
    es: null,
    retry: 0,
    starting: null,
    closed: false,
    ui: {}
  };
  var STORE = "chatgw:" + S.key;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var name in attrs || {}) node.setAttribute(name, attrs[name]);
    if (text != null) node.textContent = text;
    return node;
  }

  function icon(d) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    svg.appendChild(path);
    return svg;
  }

  function saved() {
    try { return JSON.parse(localStorage.getItem(STORE) || "null"); } catch (e) { return null; }
  }

  function save() {
    try {
      if (S.token) localStorage.setItem(STORE, JSON.stringify({ token: S.token }));
      else localStorage.removeItem(STORE);
    } catch (e) { /* storage off: the conversation lasts this page view */ }
  }

  function api(method, path, body, auth) {
    var headers = {};
    if (body) headers["Content-Type"] = "application/json";
    if (auth && S.token) headers.Authorization = "Bearer " + S.token;
    return fetch(S.base + path, {
      method: method, headers: headers, body: body ? JSON.stringify(body) : undefined,
      mode: "cors", credentials: "omit", cache: "no-store"
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (json) {
        if (res.ok && json.success) return json.data;
        var err = new Error((json.errors || ["HTTP " + res.status]).join("; "));
        err.status = res.status;
        err.retryAfter = res.headers.get("Retry-After");
        throw err;
      });
    }, function () {
      var err = new Error("unreachable");
      err.status = 0;
      throw err;
    });
  }

  function notify(text, isError) {
    var n = S.ui.notice;
    n.textContent = text || "";
    n.hidden = !text;
    n.className = "notice" + (isError ? " error" : "");
  }

  function explain(err) {
    if (err.status === 0) {
      return "The chat cannot reach its server. If you run this site, check that this page's origin (" +
        location.origin + ") is in the widget's allowed origins.";
    }
    if (err.status === 429) return "You're sending messages too fast. Please wait " + (err.retryAfter || "a few") + " s.";
    return err.message;
  }

  function build() {
    var host = el("div", { id: "chatgw-widget" });
    var root = host.attachShadow({ mode: "open" });
    if (root.adoptedStyleSheets !== undefined && typeof CSSStyleSheet === "function") {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } else {
      root.appendChild(el("style", {}, CSS));
    }
    var u = S.ui;
    u.host = host;
    // The agent's colour arrives with its config; until then (or if it never does) the default.
    host.style.setProperty("--accent", "#2563eb");
    u.launcher = el("button", { "class": "launcher", type: "button", "aria-label": "Open chat", "aria-expanded": "false", "aria-controls": "chatgw-panel" });
    u.launcher.appendChild(icon("M4 3h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z"));
    u.badge = el("span", { "class": "badge", hidden: "" });
    u.launcher.appendChild(u.badge);
    u.panel = el("div", { "class": "panel", id: "chatgw-panel", role: "dialog", "aria-label": "Chat", hidden: "" });
    var header = el("header");
    u.title = el("h2", {}, "Chat");
    u.close = el("button", { "class": "close", type: "button", "aria-label": "Close chat" }, "×");
    header.appendChild(u.title);
    header.appendChild(u.close);
    u.notice = el("div", { "class": "notice", role: "alert", hidden: "" });
    u.log = el("div", { "class": "log", role: "log", "aria-live": "polite", "aria-label": "Conversation", tabindex: "0" });
    u.typing = el("div", { "class": "typing", "aria-live": "polite", hidden: "" }, "Typing…");
    u.lead = el("form", { "class": "lead", "aria-label": "Before we start", novalidate: "", hidden: "" });
    u.composer = el("form", { "class": "composer", "aria-label": "Send a message" });
    var row = el("div", { "class": "row" });
    u.input = el("textarea", { id: "chatgw-input", "aria-label": "Message", placeholder: "Write a message…", rows: "1", maxlength: "4000" });
    u.send = el("button", { "class": "send", type: "submit" }, "Send");
    row.appendChild(u.input);
    row.appendChild(u.send);
    u.composer.appendChild(row);
    u.callToggle = el("button", { "class": "link", type: "button", "aria-expanded": "false" }, "Request a phone call");
    u.callbox = el("form", { "class": "callbox", "aria-label": "Request a phone call", hidden: "" });
    var phoneLabel = el("label", { "for": "chatgw-phone" }, "Your phone number");
    u.phone = el("input", { id: "chatgw-phone", type: "tel", autocomplete: "tel", placeholder: "+1 555 123 4567" });
    var callRow = el("div", { "class": "row" });
    callRow.appendChild(u.phone);
    callRow.appendChild(el("button", { "class": "primary", type: "submit" }, "Call me"));
    u.callbox.appendChild(phoneLabel);
    u.callbox.appendChild(callRow);
    [header, u.notice, u.log, u.typing, u.lead, u.composer, u.callToggle, u.callbox].forEach(function (n) { u.panel.appendChild(n); });
    root.appendChild(u.launcher);
    root.appendChild(u.panel);
    document.body.appendChild(host);

    u.launcher.addEventListener("click", function () { toggle(!S.open); });
    u.close.addEventListener("click", function () { toggle(false); });
    u.panel.addEventListener("keydown", function (e) { if (e.key === "Escape") toggle(false); });
    u.composer.addEventListener("submit", function (e) { e.preventDefault(); sendMessage(); });
    u.input.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); sendMessage(); }
    });
    u.lead.addEventListener("submit", function (e) { e.preventDefault(); submitLead(); });
    u.callToggle.addEventListener("click", function () {
      var show = u.callbox.hidden;
      u.callbox.hidden = !show;
      u.callToggle.setAttribute("aria-expanded", String(show));
      if (show) u.phone.focus();
    });
    u.callbox.addEventListener("submit", function (e) { e.preventDefault(); requestCall(); });
  }

  function applyAgent(agent) {
    S.agent = agent;
    S.ui.host.style.setProperty("--accent", agent.color || "#2563eb");
    S.ui.title.textContent = agent.title || agent.name || "Chat";
    S.ui.panel.setAttribute("aria-label", agent.title || agent.name || "Chat");
    if (!agent.online) {
      notify("We're offline right now and can't take new messages.", false);
      S.ui.input.disabled = true;
      S.ui.send.disabled = true;
    }
  }

  function needsLead() {
    return !S.token && S.agent && S.agent.lead_form && S.agent.lead_form.fields.length > 0;
  }

  function renderLead() {
    var form = S.ui.lead;
    form.textContent = "";
    var need = needsLead();
    S.ui.callToggle.hidden = need;
    if (!need) { form.hidden = true; S.ui.composer.hidden = false; return; }
    form.appendChild(el("p", { "class": "who" }, "Please tell us about you first."));
    S.agent.lead_form.fields.forEach(function (f) {
      var id = "chatgw-lead-" + f.name;
      var label = el("label", { "for": id }, f.label + (f.required ? " *" : ""));
      var input = el("input", { id: id, name: f.name, type: f.type === "tel" ? "tel" : f.type === "email" ? "email" : "text" });
      if (f.required) input.setAttribute("aria-required", "true");
      form.appendChild(label);
      form.appendChild(input);
    });
    form.appendChild(el("button", { "class": "primary", type: "submit" }, "Start chat"));
    form.hidden = false;
    S.ui.composer.hidden = true;
    // The panel may have opened before the agent's form arrived: focus its first field now.
    if (S.open) form.querySelector("input").focus();
  }

  function renderPreview() {
    if (S.sessionId || !S.agent || !S.agent.greeting || S.ui.log.childNodes.length) return;
    var node = el("div", { "class": "msg preview" });
    node.textContent = S.agent.greeting;
    S.ui.log.appendChild(node);
  }

  function roleLabel(m) {
    if (m.role === "customer") return "You";
    if (m.role === "operator") return m.author || "Support team";
    return (S.agent && S.agent.title) || "Assistant";
  }

  function addMessage(m, live) {
    if (S.seen[m.seq]) return;
    S.seen[m.seq] = true;
    S.lastSeq = Math.max(S.lastSeq, m.seq);
    var preview = S.ui.log.querySelector(".preview");
    if (preview) preview.remove();
    var node = el("div", { "class": "msg " + m.role, "data-seq": String(m.seq) });
    node.appendChild(el("span", { "class": "who" }, roleLabel(m)));
    node.appendChild(document.createTextNode(m.text));
    var after = null;
    var nodes = S.ui.log.querySelectorAll(".msg[data-seq]");
    for (var i = 0; i < nodes.length; i++) {
      if (Number(nodes[i].getAttribute("data-seq")) > m.seq) { after = nodes[i]; break; }
    }
    S.ui.log.insertBefore(node, after);
    S.ui.log.scrollTop = S.ui.log.scrollHeight;
    if (live && m.role !== "customer" && !S.open) {
      S.unread += 1;
      showUnread();
    }
  }

  function showUnread() {
    var b = S.ui.badge;
    b.textContent = S.unread ? String(S.unread) : "";
    b.hidden = !S.unread;
    S.ui.launcher.setAttribute("aria-label", S.unread ? "Open chat (" + S.unread + " unread)" : "Open chat");
  }

  function toggle(open) {
    S.open = open;
    S.ui.panel.hidden = !open;
    S.ui.launcher.setAttribute("aria-expanded", String(open));
    if (!open) { S.ui.launcher.focus(); return; }
    S.unread = 0;
    showUnread();
    if (S.user && !S.token) start({}).catch(function () {});
    var first = needsLead() ? S.ui.lead.querySelector("input") : S.ui.input;
    if (first) first.focus();
    S.ui.log.scrollTop = S.ui.log.scrollHeight;
  }

  function adopt(data) {
    S.token = data.visitor_token;
    S.sessionId = data.session_id;
    S.closed = false;
    save();
    if (data.agent) applyAgent(data.agent);
    (data.messages || []).forEach(function (m) { addMessage(m, false); });
    renderLead();
    connect();
  }

  function start(lead) {
    if (S.starting) return S.starting;
    var body = { key: S.key };
    if (S.user) body.user = S.user;
    else if (S.token) body.visitor_token = S.token;
    if (lead && Object.keys(lead).length) body.lead = lead;
    S.starting = api("POST", "/widget/v1/sessions", body, false).then(function (data) {
      S.starting = null;
      if (data.session_id !== S.sessionId) { resetThread(); }
      adopt(data);
      return data;
    }, function (err) {
      S.starting = null;
      throw err;
    });
    return S.starting;
  }

  function resetThread() {
    S.seen = {};
    S.lastSeq = 0;
    S.ui.log.textContent = "";
  }

  function forget() {
    S.token = null;
    S.sessionId = null;
    save();
    if (S.es) { S.es.close(); S.es = null; }
  }

  function submitLead() {
    var lead = {};
    Array.prototype.forEach.call(S.ui.lead.querySelectorAll("input"), function (i) { lead[i.name] = i.value; });
    notify("");
    start(lead).then(function () {
      S.ui.input.focus();
    }, function (err) { notify(explain(err), true); });
  }

  function newId() {
    var a = new Uint8Array(12);
    crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function post(text, clientId, attempt) {
    return api("POST", "/widget/v1/messages", { content: text, client_id: clientId }, true).catch(function (err) {
      // A lost connection may have lost the answer, not the message: the same client_id is stored once.
      if (err.status === 0 && attempt < 3) {
        return new Promise(function (r) { setTimeout(r, 1000 * (attempt + 1)); }).then(function () {
          return post(text, clientId, attempt + 1);
        });
      }
      throw err;
    });
  }

  function sendMessage() {
    var text = S.ui.input.value.trim();
    if (!text || S.ui.send.disabled) return;
    if (needsLead()) { renderLead(); return; }
    S.ui.send.disabled = true;
    notify("");
    var ready = S.token && !S.closed ? Promise.resolve() : start({});
    ready.then(function () {
      return post(text, newId(), 0);
    }).then(function (m) {
      S.ui.input.value = "";
      if (m.visitor_token) {
        resetThread();
        adopt({ visitor_token: m.visitor_token, session_id: m.session_id || S.sessionId, messages: [] });
      }
      addMessage(m, false);
    }, function (err) {
      if (err.status === 401 || err.status === 404) { forget(); renderLead(); }
      notify(explain(err), true);
    }).then(function () {
      S.ui.send.disabled = !(S.agent && S.agent.online);
      S.ui.input.focus();
    });
  }

  function requestCall() {
    var number = S.ui.phone.value.trim();
    if (!number) { notify("Please enter your phone number.", true); return; }
    var ready = S.token ? Promise.resolve() : start({});
    ready.then(function () {
      return api("POST", "/widget/v1/call", { phone_number: number }, true);
    }).then(function () {
      notify("Thanks! We'll call you shortly.", false);
    }, function (err) { notify(explain(err), true); });
  }

  function connect() {
    if (S.es) S.es.close();
    var url = S.base + "/widget/v1/events?visitor_token=" + encodeURIComponent(S.token) + "&after_seq=" + S.lastSeq;
    var es = new EventSource(url);
    S.es = es;
    es.addEventListener("open", function () { S.retry = 0; });
    es.addEventListener("message", function (e) { addMessage(JSON.parse(e.data), true); S.ui.typing.hidden = true; });
    es.addEventListener("typing", function (e) { S.ui.typing.hidden = !JSON.parse(e.data).typing; });
    es.addEventListener("session", function (e) {
      var s = JSON.parse(e.data);
      if (s.status === "closed") {
        S.closed = true;
        notify("This conversation has ended. Write again to start a new one.", false);
      } else if (s.mode === "support") {
        notify("A member of our team has joined the conversation.", false);
      }
    });
    es.addEventListener("error", function () {
      if (es.readyState !== EventSource.CLOSED || S.es !== es) return;
      // The browser gave up (an HTTP error, or the server went away for good): catch up over
      // plain HTTP, which also tells a dead token from a dead network, then stream again.
      S.es = null;
      S.retry = Math.min(S.retry + 1, 6);
      setTimeout(resume, 500 * Math.pow(2, S.retry));
    });
  }

  function resume() {
    if (!S.token) return;
    api("GET", "/widget/v1/messages?after_seq=" + S.lastSeq + "&limit=200", null, true).then(function (page) {
      page.items.forEach(function (m) { addMessage(m, true); });
      connect();
    }, function (err) {
      if (err.status === 401 || err.status === 403 || err.status === 404) {
        forget();
        notify(explain(err), true);
      } else {
        setTimeout(resume, 500 * Math.pow(2, Math.min(++S.retry, 6)));
      }
    });
  }

  function boot() {
    build();
    var stored = saved();
    if (stored && stored.token && !S.user) S.token = stored.token;
    // A stored conversation is resumed at once (its replies count as unread); a logged-in user's
    // when the panel opens; anyone else's is created by their first message or the lead form.
    var first = S.token ? start({}) : Promise.reject({ status: -1 });
    first.catch(function (err) {
      if (err.status === 401 || err.status === 404) forget();
      return api("GET", "/widget/v1/config?key=" + encodeURIComponent(S.key), null, false).then(function (data) {
        applyAgent(data.agent);
        renderLead();
        renderPreview();
      });
    }).catch(function (err) {
      notify(explain(err), true);
      S.ui.input.disabled = true;
      S.ui.send.disabled = true;
      // Nothing here can work without the server: no call link either.
      S.ui.callToggle.hidden = true;
    });
  }

  if (document.body) boot();
  else document.addEventListener("DOMContentLoaded", boot);
})();
