/*
 * The sandbox phone (admin/whatsapp/sandbox_phone/phone.html). Every 1.5 s the screen is fetched again and
 * only the messages that changed are replaced, so a playing voice note, an open list or the focused
 * button stay as they are. What the customer sends or taps is posted in the background; it shows at once
 * as a pending bubble (◷) until the stored message arrives on the screen. Without this script every form
 * still works, with a page load each.
 */
(function () {
  "use strict";

  var PENDING_TOO_LONG_MS = 30000;  // by then the webhook should have been posted and processed

  var screen = document.getElementById("sbx-screen");
  var transcript = document.getElementById("sbx-transcript");
  var outbox = document.getElementById("sbx-outbox");
  var composer = document.getElementById("sbx-composer");
  var tapForm = document.getElementById("sbx-tap-form");
  if (!screen || !transcript || !outbox || !composer || !tapForm) {
    return;
  }
  var text = composer.querySelector("textarea[name=text]");
  var file = composer.querySelector("input[type=file]");
  var sendButton = document.getElementById("sbx-send");
  var statusLine = document.getElementById("sbx-status-line");
  var attached = document.getElementById("sbx-attached");
  var attachedName = document.getElementById("sbx-attached-name");
  var unattach = document.getElementById("sbx-unattach");
  var pollMs = Number(transcript.getAttribute("data-poll-ms")) || 1500;
  var screenUrl = transcript.getAttribute("data-screen-url");
  var timer = null;
  var rowsHtml = {};  // each row's HTML as the server last sent it, by the row's id

  function csrfToken(form) {
    var field = form.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function nearBottom() {
    return screen.scrollHeight - screen.scrollTop - screen.clientHeight < 60;
  }

  function toBottom() {
    screen.scrollTop = screen.scrollHeight;
  }

  function rememberRows() {
    rowsHtml = {};
    Array.prototype.forEach.call(transcript.children, function (row) {
      if (row.id) {
        rowsHtml[row.id] = row.outerHTML;
      }
    });
  }

  function focusKey() {
    var active = document.activeElement;
    return active && transcript.contains(active) ? active.getAttribute("data-focus-key") : null;
  }

  // Put the new screen in place, keeping every row whose HTML did not change (and its state).
  function show(html) {
    var stick = nearBottom();
    var focused = focusKey();
    var open = {};
    Array.prototype.forEach.call(transcript.querySelectorAll("details[open][data-key]"), function (details) {
      open[details.getAttribute("data-key")] = true;
    });
    var incoming = document.createElement("template");
    incoming.innerHTML = html;
    var wanted = [];
    var fresh = {};
    Array.prototype.forEach.call(incoming.content.children, function (row) {
      var current = row.id ? document.getElementById(row.id) : null;
      fresh[row.id] = row.outerHTML;
      wanted.push(current && transcript.contains(current) && rowsHtml[row.id] === row.outerHTML ? current : row);
    });
    wanted.forEach(function (row, index) {
      if (transcript.children[index] !== row) {
        transcript.insertBefore(row, transcript.children[index] || null);
      }
    });
    while (transcript.children.length > wanted.length) {
      transcript.removeChild(transcript.lastElementChild);
    }
    rowsHtml = fresh;
    Array.prototype.forEach.call(transcript.querySelectorAll("details[data-key]"), function (details) {
      if (open[details.getAttribute("data-key")]) {
        details.open = true;
      }
    });
    if (focused && !transcript.contains(document.activeElement)) {
      var again = transcript.querySelector('[data-focus-key="' + CSS.escape(focused) + '"]');
      if (again) {
        again.focus({preventScroll: true});
      }
    }
    settleOutbox();
    if (stick) {
      toBottom();
    }
  }

  function schedule(delay) {
    if (timer !== null) {
      window.clearTimeout(timer);
    }
    timer = window.setTimeout(refresh, delay === undefined ? pollMs : delay);
  }

  function refresh() {
    timer = null;
    if (document.hidden) {
      schedule();
      return;
    }
    fetch(screenUrl, {credentials: "same-origin", cache: "no-store", headers: {"Accept": "text/html"}})
      .then(function (response) {
        if (!response.ok) {
          throw new Error("the screen answered " + response.status);
        }
        return response.text();
      })
      .then(show)
      .catch(function () { /* a network hiccup: the next tick tries again */ })
      .then(function () { schedule(); });
  }

  // --- pending bubbles: what was sent, until the stored message is on the screen ---------------------

  function pending(id, label) {
    var row = document.createElement("div");
    row.className = "sbx-row sbx-customer";
    row.setAttribute("data-pending-id", id);
    row.setAttribute("data-sent-at", String(Date.now()));
    var bubble = document.createElement("div");
    bubble.className = "sbx-bubble sbx-pending-bubble";
    var body = document.createElement("div");
    body.className = "sbx-text-body";
    body.textContent = label;
    var meta = document.createElement("div");
    meta.className = "sbx-meta";
    meta.textContent = "◷ sending";
    bubble.appendChild(body);
    bubble.appendChild(meta);
    row.appendChild(bubble);
    outbox.appendChild(row);
    toBottom();
  }

  function settleOutbox() {
    Array.prototype.forEach.call(outbox.querySelectorAll("[data-pending-id]"), function (row) {
      var id = row.getAttribute("data-pending-id");
      if (transcript.querySelector('[data-provider-id="' + CSS.escape(id) + '"]')) {
        outbox.removeChild(row);
      } else if (Date.now() - Number(row.getAttribute("data-sent-at")) > PENDING_TOO_LONG_MS) {
        row.querySelector(".sbx-meta").textContent = "⚠ not arrived yet: is a Celery worker running?";
      }
    });
  }

  function say(problem) {
    statusLine.textContent = problem || "";
  }

  function post(url, form, data) {
    return fetch(url, {method: "POST", body: data, credentials: "same-origin",
                       headers: {"Accept": "application/json", "X-CSRFToken": csrfToken(form)}})
      .then(function (response) {
        return response.json().catch(function () {
          return {ok: false, error: "The server answered " + response.status + "."};
        });
      });
  }

  // --- the composer ------------------------------------------------------------------------------------

  function showAttachment() {
    var chosen = file.files && file.files[0];
    attached.hidden = !chosen;
    attachedName.textContent = chosen ? "Attached: " + chosen.name : "";
    text.placeholder = chosen && /^image\//.test(chosen.type) ? "Add a caption" : "Message";
  }

  function outgoingLabel() {
    var chosen = file.files && file.files[0];
    var words = text.value.trim();
    if (!chosen) {
      return words;
    }
    var kind = /^image\//.test(chosen.type) ? "Image " : "Voice note ";
    return kind + chosen.name + (words ? " · " + words : "");
  }

  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    var label = outgoingLabel();
    if (!label) {
      say("Type a message, or attach a voice note or an image.");
      text.focus();
      return;
    }
    sendButton.disabled = true;
    say("");
    post(composer.action, composer, new FormData(composer))
      .then(function (answer) {
        if (!answer.ok) {
          say(answer.error);
          return;
        }
        pending(answer.id, label);
        text.value = "";
        file.value = "";
        showAttachment();
        schedule(300);
      })
      .catch(function () { say("Not sent: the server could not be reached."); })
      .then(function () {
        sendButton.disabled = false;
        text.focus();
      });
  });

  text.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit(sendButton);
    }
  });
  file.addEventListener("change", showAttachment);
  unattach.addEventListener("click", function () {
    file.value = "";
    showAttachment();
    file.focus();
  });

  // --- taps on buttons and list rows ------------------------------------------------------------------

  tapForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var button = event.submitter;
    if (!button || !button.value) {
      return;
    }
    var data = new FormData(tapForm);
    data.set("choice", button.value);
    button.disabled = true;
    say("");
    post(tapForm.action, tapForm, data)
      .then(function (answer) {
        if (answer.ok) {
          pending(answer.id, "↩ " + (button.getAttribute("data-title") || ""));
          schedule(300);
        } else {
          say(answer.error);
        }
      })
      .catch(function () { say("Not sent: the server could not be reached."); })
      .then(function () { button.disabled = false; });
  });

  rememberRows();
  showAttachment();
  toBottom();
  schedule();
})();
