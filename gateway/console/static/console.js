/* The operator console's script: live updates over Server-Sent Events, actions without a
   reload, the knowledge upload's progress. No dependencies, no build step. HTML it inserts
   comes rendered (and escaped) by the server's templates; text it writes goes through
   textContent. */
(function () {
  "use strict";

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var baseTitle = document.title;

  function $(id) { return document.getElementById(id); }

  function fragment(html) {
    var t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  function liveStatus(text, state) {
    var el = $("live-status");
    if (!el) { return; }
    el.textContent = text;
    el.hidden = !text;
    el.setAttribute("data-state", state || "");
  }

  /* One EventSource with the page's connection state shown. The browser reconnects on its
     own and sends Last-Event-ID; if the stream is closed for good (e.g. the server was
     restarted and refused once) a new one is opened with `reopen()`'s URL. */
  function stream(url, handlers, reopen) {
    var es = null;
    var retry = null;
    var everOpen = false;
    function open(u) {
      es = new EventSource(u);
      es.onopen = function () {
        if (everOpen) {
          liveStatus("Live again: caught up.", "ok");
          setTimeout(function () { liveStatus(""); }, 2500);
        }
        everOpen = true;
      };
      es.onerror = function () {
        liveStatus("Live updates disconnected; reconnecting…", "lost");
        if (es.readyState === EventSource.CLOSED && !retry) {
          retry = setTimeout(function () { retry = null; open(reopen ? reopen() : u); }, 3000);
        }
      };
      Object.keys(handlers).forEach(function (name) {
        es.addEventListener(name, function (e) { handlers[name](JSON.parse(e.data)); });
      });
      es.addEventListener("expired", function () {
        es.close();
        liveStatus("Signed out or session expired: sign in again to see live updates.", "lost");
      });
    }
    open(url);
  }

  function errorsOf(body, status) {
    if (body && body.errors && body.errors.length) { return body.errors.join("; "); }
    return "The request failed (HTTP " + status + ").";
  }

  function post(form, submitter) {
    var data = new FormData(form);
    if (submitter && submitter.name) { data.append(submitter.name, submitter.value); }
    return fetch(form.action, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" }
    }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (body) {
        if (!r.ok) { throw new Error(errorsOf(body, r.status)); }
        return body;
      });
    });
  }

  /* Waiting times ("waiting 4 min") from data-since (ms). */
  function ago(ms) {
    var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) { return s + " s"; }
    if (s < 3600) { return Math.round(s / 60) + " min"; }
    if (s < 86400) { return Math.round(s / 360) / 10 + " h"; }
    return Math.round(s / 8640) / 10 + " d";
  }
  function tickWaits() {
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var since = Number(el.getAttribute("data-since"));
      if (since) { el.textContent = "waiting " + ago(since); }
    });
  }

  function seenKey(id) { return "chatgw.seen." + id; }

  /* Sessions page */
  function outboxPage() {
    var list = $("outbox");
    if (!list) { return; }
    stream(list.getAttribute("data-events"), {
      list: function (d) {
        var t = document.createElement("template");
        t.innerHTML = d.html;
        list.replaceChildren(t.content);
      }
    });
  }

  function sessionsPage() {
    var rows = $("rows");
    if (!rows) { return; }
    var order = rows.getAttribute("data-order");
    var live = rows.getAttribute("data-live") === "yes";
    var helpSeen = null;

    function key(el) { return Number(el.getAttribute(order === "help" ? "data-help" : "data-activity")) || 0; }
    function markUnread(el) {
      var seen = Number(localStorage.getItem(seenKey(el.getAttribute("data-id"))) || 0);
      if (seen && Number(el.getAttribute("data-activity")) > seen) { el.classList.add("unread"); }
    }
    function place(el) {
      var k = key(el);
      var children = rows.children;
      for (var i = 0; i < children.length; i++) {
        var ck = key(children[i]);
        if (order === "help" ? ck > k : ck < k) { rows.insertBefore(el, children[i]); return; }
      }
      rows.appendChild(el);
    }
    function empty() { var e = $("empty"); if (e) { e.hidden = rows.children.length > 0; } }

    Array.prototype.forEach.call(rows.children, markUnread);
    stream(rows.getAttribute("data-events"), {
      row: function (d) {
        var existing = $("row-" + d.id);
        if (!existing && !live) { return; }
        var el = fragment(d.html);
        if (existing) { existing.remove(); } else { el.classList.add("unread", "fresh"); }
        if (existing && existing.classList.contains("unread")) { el.classList.add("unread"); }
        markUnread(el);
        place(el);
        tickWaits();
        empty();
      },
      remove: function (d) { var el = $("row-" + d.id); if (el) { el.remove(); empty(); } },
      reset: function (d) {
        if (!live) { return; }
        var t = document.createElement("template");
        t.innerHTML = d.html;
        rows.replaceChildren(t.content);
        Array.prototype.forEach.call(rows.children, markUnread);
        tickWaits();
        empty();
      },
      stats: function (d) {
        var old = $("stats");
        if (old) { old.replaceWith(fragment(d.html)); }
        document.querySelectorAll('.tabs [data-stat="help_requested"]').forEach(function (el) { el.textContent = d.help; });
        if (helpSeen !== null && d.help > helpSeen && document.hidden) {
          document.title = "(" + d.help + " waiting) " + baseTitle;
        }
        helpSeen = d.help;
      }
    }, function () { return rows.getAttribute("data-events") + "&since=1"; });
    document.addEventListener("visibilitychange", function () { if (!document.hidden) { document.title = baseTitle; } });
  }

  /* Session page */
  function sessionPage() {
    var root = $("session");
    if (!root) { return; }
    var sid = root.getAttribute("data-id");
    var thread = $("thread");
    var lastSeq = Number(root.getAttribute("data-last-seq")) || 0;
    var errorEl = $("action-error");
    var typingTimer = null;
    localStorage.setItem(seenKey(sid), String(Date.now()));

    function showError(text) { errorEl.textContent = text || ""; errorEl.hidden = !text; }
    function nearBottom() {
      if (thread.scrollHeight > thread.clientHeight) { return thread.scrollTop + thread.clientHeight >= thread.scrollHeight - 200; }
      return window.innerHeight + window.scrollY >= document.body.offsetHeight - 200;
    }
    thread.scrollTop = thread.scrollHeight;

    stream(root.getAttribute("data-events"), {
      message: function (d) {
        var el = fragment(d.html);
        var existing = $("msg-" + d.id);
        if (existing) { existing.replaceWith(el); return; }
        var stick = nearBottom();
        thread.appendChild(el);
        lastSeq = Math.max(lastSeq, d.seq);
        localStorage.setItem(seenKey(sid), String(Date.now()));
        if (stick) { thread.scrollTop = thread.scrollHeight; el.scrollIntoView({ block: "nearest" }); }
      },
      typing: function (d) {
        var el = $("typing");
        el.textContent = d.who + " is typing…";
        el.hidden = false;
        clearTimeout(typingTimer);
        typingTimer = setTimeout(function () { el.hidden = true; }, 5000);
      },
      panel: function (d) {
        var panel = $("panel");
        if (panel) { panel.replaceWith(fragment(d.html)); }
        var actions = $("composer-actions");
        if (actions) { actions.replaceWith(fragment(d.actions)); }
        var composer = $("composer");
        if (composer && d.status === "closed") { composer.hidden = true; }
        tickWaits();
      }
    }, function () { return root.getAttribute("data-events") + "?after_seq=" + lastSeq; });

    document.addEventListener("submit", function (e) {
      var form = e.target;
      if (!(form.classList.contains("action") || form.id === "composer")) { return; }
      e.preventDefault();
      var submitter = e.submitter;
      if (form.id === "composer" && !submitter) {
        submitter = defaultButton();
        if (!submitter) { showError("Nothing can be sent right now (see the reasons above)."); return; }
      }
      var buttons = form.querySelectorAll("button");
      buttons.forEach(function (b) { b.disabled = true; });
      showError("");
      post(form, submitter).then(function () {
        if (form.id === "composer") { $("message").value = ""; }
      }).catch(function (err) { showError(err.message); }).then(function () {
        buttons.forEach(function (b) { b.disabled = false; });
      });
    });

    function defaultButton() {
      var actions = $("composer-actions");
      if (!actions) { return null; }
      var wanted = actions.getAttribute("data-default");
      return actions.querySelector('button[value="' + wanted + '"]') || actions.querySelector("button");
    }

    var box = $("message");
    var typingSent = 0;
    if (box) {
      box.addEventListener("input", function () {
        // Tell other operators at most every 3 s while writing.
        if (Date.now() - typingSent < 3000 || !box.value.trim()) { return; }
        typingSent = Date.now();
        fetch("/console/sessions/" + encodeURIComponent(sid) + "/typing", {
          method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf }
        }).catch(function () { return null; });
      });
      box.addEventListener("keydown", function (e) {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
          e.preventDefault();
          if (!box.value.trim()) { return; }
          var button = defaultButton();
          if (button) { $("composer").requestSubmit(button); } else { showError("Nothing can be sent right now (see the reasons above)."); }
        }
      });
    }
  }

  /* Knowledge page */
  function knowledgePage() {
    var form = $("upload");
    if (form) {
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        var file = $("upload-file").files[0];
        var errorEl = $("upload-error");
        errorEl.hidden = true;
        if (!file) { return; }
        var bar = $("upload-bar");
        var pct = $("upload-pct");
        var indexBar = $("index-bar");
        var indexState = $("index-state");
        $("upload-progress").hidden = false;
        bar.value = 0;
        pct.textContent = "0%";
        indexBar.removeAttribute("value");
        indexState.textContent = "waiting for the upload";
        var data = new FormData();
        data.append("file", file);
        var agent = $("upload-agent").value;
        var xhr = new XMLHttpRequest();
        xhr.open("POST", form.action + (agent ? "?agent=" + encodeURIComponent(agent) : ""));
        xhr.setRequestHeader("X-CSRF-Token", csrf);
        xhr.setRequestHeader("Accept", "application/json");
        xhr.upload.onprogress = function (ev) {
          if (ev.lengthComputable) {
            var p = Math.round(100 * ev.loaded / ev.total);
            bar.value = p;
            pct.textContent = p + "% (" + ev.loaded + " of " + ev.total + " bytes)";
          }
        };
        xhr.onerror = function () { fail("The upload failed: the connection was lost."); };
        xhr.onload = function () {
          var body = null;
          try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
          if (xhr.status !== 200 || !body || !body.success) { fail(errorsOf(body, xhr.status)); return; }
          bar.value = 100;
          pct.textContent = "100%";
          follow(body.data);
        };
        xhr.send(data);

        function fail(text) {
          errorEl.textContent = text;
          errorEl.hidden = false;
          indexState.textContent = "";
          indexBar.value = 0;
        }
        function follow(doc) {
          if (doc.status === "ready") {
            indexBar.value = 1;
            indexState.textContent = "Ready: " + doc.chunks + " chunks";
            addRow(doc);
            return;
          }
          if (doc.status === "failed") { fail("Indexing failed: " + (doc.error || "unknown error")); return; }
          indexState.textContent = "Indexing…";
          setTimeout(function () {
            fetch("/console/knowledge/documents/" + encodeURIComponent(doc.id), {
              credentials: "same-origin", headers: { "Accept": "application/json" }
            }).then(function (r) { return r.json(); }).then(function (b) {
              if (b && b.success) { follow(b.data); } else { fail(errorsOf(b, 0)); }
            }).catch(function () { fail("Lost track of the indexing; reload the page."); });
          }, 400);
        }
      });
    }

    /* Documents still indexing when the page loaded: follow them until they are done. */
    document.querySelectorAll('.doc-status[data-status="indexing"]').forEach(function (cell) {
      (function poll() {
        fetch("/console/knowledge/documents/" + encodeURIComponent(cell.getAttribute("data-doc")), {
          credentials: "same-origin", headers: { "Accept": "application/json" }
        }).then(function (r) { return r.json(); }).then(function (b) {
          if (!b || !b.success) { return; }
          cell.textContent = b.data.status + (b.data.error ? " — " + b.data.error : "");
          if (b.data.status === "indexing") { setTimeout(poll, 1000); } else { cell.nextElementSibling.textContent = String(b.data.chunks); }
        }).catch(function () { return null; });
      })();
    });

    function addRow(doc) {
      var tbody = $("docs");
      var tr = document.createElement("tr");
      tr.id = "doc-" + doc.id;
      [doc.name, doc.content_type, doc.status, String(doc.chunks), "", (doc.created_at || "").slice(0, 19).replace("T", " ")]
        .forEach(function (text) { var td = document.createElement("td"); td.textContent = text; tr.appendChild(td); });
      tbody.insertBefore(tr, tbody.firstChild);
    }

    document.addEventListener("submit", function (e) {
      var f = e.target;
      if (!f.classList.contains("action")) { return; }
      e.preventDefault();
      post(f, e.submitter).then(function () { location.reload(); }).catch(function (err) { window.alert(err.message); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.getAttribute("data-page");
    if (page === "sessions") { sessionsPage(); }
    if (page === "session") { sessionPage(); }
    if (page === "knowledge") { knowledgePage(); }
    if (page === "outbox") { outboxPage(); }
    tickWaits();
    setInterval(tickWaits, 15000);
  });
})();
